//! `mer prep`: reads one or more datasets, builds every clip's 11 key-frames from its face crop, computes the
//! 10 Farneback flows, and writes ONE prepared file (`mer_shared::prepared::Prepared`, safetensors)
//! atomically. Clips are processed in parallel (rayon) with a progress bar (indicatif).
//!
//! A bad clip (missing frames, apex outside onset..offset or not annotated, unreadable image, no face)
//! fails the run with an error naming it; with `skip_bad` it is left out and listed in a report next to
//! the output (`<out>.skipped.tsv`: sample id, reason). Nothing is written under the output name unless the
//! whole run succeeded.

use crate::error::{Result, WorkerError};
use crate::prep::datasets::composite::select;
use crate::prep::datasets::corrections::Corrections;
use crate::prep::datasets::frames::{find_frame, GrayFrame};
use crate::prep::datasets::{read_dataset, ClipRecord, DatasetKind};
use crate::prep::face::{read_gray, FaceCrop, FaceDetector};
use crate::prep::flow::{flow_stack, FlowParams};
use crate::prep::interp::{FarnebackInterpolator, FrameInterpolator, TorchScriptInterpolator};
use crate::prep::keyframes::{
    adaptive_plan, build_adaptive, tim_resample, tim_times, KeyframeFill, KeyframeMethod, Source,
};
use crate::prep::planes::apex_group_planes;
use mer_shared::prepared::{PrepInfo, Prepared, SampleMeta};
use mer_shared::Dataset;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which frame interpolator synthesizes key-frames.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum InterpolatorChoice {
    /// Farneback warp-half-way-and-blend (default).
    #[default]
    Farneback,
    /// A TorchScript model file `forward(a, b) -> middle` and the channels it expects (1 or 3).
    TorchScript {
        /// The `.pt` file.
        path: PathBuf,
        /// Input channels (1 = gray, 3 = gray replicated).
        channels: i64,
    },
}

/// Options of a preparation run (`Default` + public fields; set at least one dataset root and `out`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrepOptions {
    /// CASME II root (coding workbook + `CASME2_RAW_selected/` or `Cropped/`).
    pub casme2: Option<PathBuf>,
    /// SAMM root (workbook + `SAMM/`).
    pub samm: Option<PathBuf>,
    /// SMIC-HS root, original layout (`HS/` or the `HS` folder itself).
    pub smic: Option<PathBuf>,
    /// SMIC-E root (annotation workbook + `SMIC-HS-E/`).
    pub smic_e: Option<PathBuf>,
    /// CAS(ME)^3 part A root (label workbook + `<Subject>/<Filename>/color/`, or under `ME_A/`).
    pub casme3a: Option<PathBuf>,
    /// CAS(ME)^3 part C root (workbook + `<sub>/<count>/color/`, or under `ME_C/`).
    pub casme3c: Option<PathBuf>,
    /// 4DME root (labelling workbook + `gray_micro/`).
    pub fourdme: Option<PathBuf>,
    /// MMEW root (workbook + `Micro_Expression/<emotion>/`).
    pub mmew: Option<PathBuf>,
    /// Keep only the official MEGC2019 composite clips, with the list's megc3 labels.
    pub composite: bool,
    /// A user's copy of the composite list (CSV); `None` = the shipped list.
    pub composite_list: Option<PathBuf>,
    /// Key-frame method.
    pub keyframes: KeyframeMethod,
    /// How the adaptive plan (adaptive and TAS) fills frames that bisection could not make.
    pub keyframe_fill: KeyframeFill,
    /// Output size (square).
    pub size: u32,
    /// Also store the flow magnitude as a third channel.
    pub magnitude: bool,
    /// Leave bad clips out (listed in `<out>.skipped.tsv`) instead of failing.
    pub skip_bad: bool,
    /// Annotation corrections file (TOML, see `datasets::corrections`).
    pub corrections: Option<PathBuf>,
    /// Use the central square of the full frame when no face is found (instead of failing the clip).
    pub face_fallback: bool,
    /// Worker threads (`None`: rayon's default, one per core).
    pub threads: Option<usize>,
    /// Frame interpolator for adaptive key-frames.
    pub interpolator: InterpolatorChoice,
    /// Farneback parameters.
    pub flow: FlowParams,
    /// Also store the onset->apex flow (u, v) and its optical strain at this size (`--apex-flow`, for
    /// STSTNet and OFF-ApexNet: 28).
    pub apex_flow: Option<u32>,
    /// Also store the face crop's frames from onset to offset, TIM-interpolated to 10 frames, at this
    /// size (`--tim10`, for LBP-TOP + SVM).
    pub tim10: Option<u32>,
    /// Output file (`.safetensors`).
    pub out: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for PrepOptions {
    fn default() -> Self {
        PrepOptions {
            casme2: None,
            samm: None,
            smic: None,
            smic_e: None,
            casme3a: None,
            casme3c: None,
            fourdme: None,
            mmew: None,
            composite: false,
            composite_list: None,
            keyframes: KeyframeMethod::Adaptive,
            keyframe_fill: KeyframeFill::Algorithm1,
            size: 112,
            magnitude: false,
            skip_bad: false,
            corrections: None,
            face_fallback: false,
            threads: None,
            interpolator: InterpolatorChoice::Farneback,
            flow: FlowParams::default(),
            apex_flow: None,
            tim10: None,
            out: PathBuf::from("prepared.safetensors"),
            progress: false,
        }
    }
}

/// What a preparation run did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepReport {
    /// The prepared file written.
    pub out: PathBuf,
    /// Samples written.
    pub samples: usize,
    /// Subjects (dataset/subject) written.
    pub subjects: usize,
    /// Samples per dataset key.
    pub per_dataset: BTreeMap<String, usize>,
    /// Samples per megc3 class per dataset key (`[negative, positive, surprise]`).
    pub megc3: BTreeMap<String, [usize; 3]>,
    /// Clips left out with `skip_bad`: (sample id, reason).
    pub skipped: Vec<(String, String)>,
    /// The skip report file (written when `skip_bad` is on).
    pub skip_report: Option<PathBuf>,
    /// Clips where the full-frame fallback was used.
    pub fallbacks: usize,
    /// Wall time of the clip processing (seconds).
    pub seconds: f64,
}

impl PrepReport {
    /// Clips processed per second.
    pub fn clips_per_sec(&self) -> f64 {
        (self.samples + self.skipped.len()) as f64 / self.seconds.max(1e-9)
    }

    /// A human-readable summary with the counts.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "wrote {} samples, {} subjects to {}\n",
            self.samples,
            self.subjects,
            self.out.display()
        );
        for (d, n) in &self.per_dataset {
            let c = self.megc3.get(d).copied().unwrap_or_default();
            s += &format!(
                "  {d:<7} {n:>4} clips   megc3 negative {} positive {} surprise {}\n",
                c[0], c[1], c[2]
            );
        }
        if self.fallbacks > 0 {
            s += &format!("  full-frame fallback used for {} clips\n", self.fallbacks);
        }
        if !self.skipped.is_empty() {
            s += &format!("  skipped {} bad clips", self.skipped.len());
            if let Some(r) = &self.skip_report {
                s += &format!(" (listed in {})", r.display());
            }
            s += "\n";
        }
        s += &format!("  {:.1} clips/s\n", self.clips_per_sec());
        s
    }
}

/// The skip report's path: `<out>.skipped.tsv`.
pub fn skip_report_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".skipped.tsv");
    PathBuf::from(s)
}

/// A clip left out: (sample id, reason).
pub type Skipped = (String, String);

/// Reads the datasets named in the options, applies corrections and the composite selection.
/// Returns the records to prepare and the list entries that could not be found (as (id, reason)).
pub fn collect_records(opts: &PrepOptions) -> Result<(Vec<ClipRecord>, Vec<Skipped>)> {
    let mut records = Vec::new();
    let roots = [
        (DatasetKind::Casme2, &opts.casme2),
        (DatasetKind::Samm, &opts.samm),
        (DatasetKind::Smic, &opts.smic),
        (DatasetKind::SmicE, &opts.smic_e),
        (DatasetKind::Casme3a, &opts.casme3a),
        (DatasetKind::Casme3c, &opts.casme3c),
        (DatasetKind::Fourdme, &opts.fourdme),
        (DatasetKind::Mmew, &opts.mmew),
    ];
    if roots.iter().all(|(_, r)| r.is_none()) {
        return Err(WorkerError::InvalidOption {
            option: "datasets".into(),
            message: "give at least one of --casme2, --samm, --smic, --smic-e, --casme3a, --casme3c, --fourdme, --mmew".into(),
        });
    }
    if opts.smic.is_some() && opts.smic_e.is_some() {
        return Err(WorkerError::InvalidOption {
            option: "--smic-e".into(),
            message: "give either --smic or --smic-e (both hold the same SMIC-HS clips)".into(),
        });
    }
    for (kind, root) in roots {
        if let Some(root) = root {
            let r = read_dataset(kind, root)?;
            tracing::info!(root = %root.display(), clips = r.len(), "read {kind:?}");
            records.extend(r);
        }
    }
    if let Some(c) = &opts.corrections {
        Corrections::load(c)?.apply(&mut records)?;
    }
    let mut missing = Vec::new();
    if opts.composite {
        let list = match &opts.composite_list {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| WorkerError::io(p, e))?;
                mer_shared::composite::parse_composite(&p.to_string_lossy(), &text)?
            }
            None => mer_shared::composite::composite_list(),
        };
        let sel = select(records, &list);
        for id in &sel.left_out {
            tracing::debug!(sample = %id, "not in the composite list: left out");
        }
        if !sel.left_out.is_empty() {
            tracing::info!(
                "{} clips on disk are not in the composite list and are left out",
                sel.left_out.len()
            );
        }
        missing = sel
            .missing
            .into_iter()
            .map(|id| {
                (
                    id,
                    "listed in the composite list but not found on disk".to_string(),
                )
            })
            .collect();
        records = sel.selected;
    }
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        if !seen.insert(r.id()) {
            return Err(WorkerError::sample(
                r.id(),
                format!("appears twice (second at {})", r.source),
            ));
        }
    }
    Ok((records, missing))
}

thread_local! {
    static DETECTOR: RefCell<Option<FaceDetector>> = const { RefCell::new(None) };
}

struct ClipOut {
    meta: SampleMeta,
    flow: Vec<f32>,
    /// `[3, S, S]` onset->apex u, v, strain, when asked for.
    apex_flow: Option<Vec<f32>>,
    /// `[10, G, G]` TIM-10 gray frames, when asked for.
    tim10: Option<Vec<u8>>,
    fallback: bool,
}

/// Frames of the TIM-10 group.
const TIM10_FRAMES: usize = 10;

/// The onset->apex group of one clip: Farneback flow between the two face crops at the prepared size
/// (the key-frame flows' parameters), then [`apex_group_planes`].
fn apex_flow_group(
    onset: &GrayFrame,
    apex: &GrayFrame,
    p: &crate::prep::flow::FlowParams,
    out: u32,
) -> Result<Vec<f32>> {
    let f = crate::prep::flow::farneback(onset, apex, p)?;
    apex_group_planes(&f.u, &f.v, f.height, f.width, out)
}

/// The TIM-10 group of one clip: the temporal interpolation model (the same cosine expansion as TIM
/// key-frames) evaluated at 10 evenly spaced positions from the first to the last frame, rounded to
/// 8-bit gray.
fn tim10_group(frames: &[GrayFrame]) -> Result<Vec<u8>> {
    let n = frames.len();
    let pos: Vec<f64> = (0..TIM10_FRAMES)
        .map(|j| j as f64 * n.saturating_sub(1) as f64 / (TIM10_FRAMES - 1) as f64)
        .collect();
    let out = tim_resample(frames, &pos)?;
    Ok(out
        .iter()
        .flat_map(|f| f.data.iter().map(|v| v.round().clamp(0.0, 255.0) as u8))
        .collect())
}

/// A clip's frame files, found and read by frame number; errors name the clip.
struct ClipFiles<'a> {
    /// The clip's record.
    rec: &'a ClipRecord,
    /// Its sample id.
    id: &'a str,
}

impl ClipFiles<'_> {
    /// A bad-sample error of this clip.
    fn bad(&self, m: String) -> WorkerError {
        WorkerError::sample(self.id, m)
    }

    /// The file of frame `t`.
    fn path_of(&self, t: u32) -> Result<PathBuf> {
        find_frame(&self.rec.frames, t)
            .map(|f| f.path.clone())
            .ok_or_else(|| self.bad(format!("frame {t} missing")))
    }

    /// The file of frame `t` relative to the dataset root (a source frame of the metadata).
    fn source(&self, t: u32) -> Result<String> {
        self.path_of(t).map(|p| self.rec.relative(&p))
    }

    /// Frame `t` in gray.
    fn read(&self, t: u32) -> Result<opencv::core::Mat> {
        let p = self.path_of(t)?;
        read_gray(&p).map_err(|e| self.bad(format!("unreadable image {}: {e}", p.display())))
    }
}

/// A clip's frames cut to the face box found on its onset frame.
struct CroppedFrames<'a> {
    /// The clip's files.
    files: ClipFiles<'a>,
    /// The onset frame (read once).
    onset: opencv::core::Mat,
    /// The onset frame's width, which every frame must have.
    w: i32,
    /// The onset frame's height, which every frame must have.
    h: i32,
    /// The face box.
    crop: FaceCrop,
}

impl CroppedFrames<'_> {
    /// Frame `t` cut to the face box at `size` x `size`.
    fn load_at(&self, t: u32, size: u32) -> Result<GrayFrame> {
        use opencv::prelude::*;
        let (w, h) = (self.w, self.h);
        let m = if t == self.files.rec.onset {
            self.onset
                .try_clone()
                .map_err(|e| WorkerError::cv("copy", e))?
        } else {
            self.files.read(t)?
        };
        if m.cols() != w || m.rows() != h {
            return Err(self.files.bad(format!(
                "frame {t} is {}x{}, the onset frame {w}x{h}",
                m.cols(),
                m.rows()
            )));
        }
        self.crop.apply(&m, size)
    }
}

/// The face box of a clip's onset frame: the Haar detector's, or the full frame's when none is found and
/// `opts.face_fallback` allows it.
fn onset_face(
    files: &ClipFiles,
    onset: &opencv::core::Mat,
    opts: &PrepOptions,
) -> Result<FaceCrop> {
    use opencv::prelude::*;
    let (w, h) = (onset.cols(), onset.rows());
    let found = DETECTOR.with(|d| -> Result<Option<FaceCrop>> {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(FaceDetector::new()?);
        }
        match d.as_mut() {
            Some(det) => det.detect(onset),
            None => Ok(None),
        }
    })?;
    match found {
        Some(c) => Ok(c),
        None if opts.face_fallback => {
            tracing::warn!(sample = %files.id, "no face found on the onset frame: using the full-frame fallback");
            Ok(FaceCrop::full_frame(w, h))
        }
        None => Err(files.bad(
            "no face found on the onset frame (use --face-fallback to crop the full frame)".into(),
        )),
    }
}

/// A clip's key-frames, their times and the source frames they were made from.
type Keyframes = (Vec<GrayFrame>, Vec<f64>, Vec<String>);

/// The key-frames of a clip with apex `apex` by `opts.keyframes` (adaptive, TAS or TIM).
fn clip_keyframes(
    frames: &CroppedFrames,
    apex: u32,
    opts: &PrepOptions,
    interp: &dyn FrameInterpolator,
) -> Result<Keyframes> {
    let (rec, files) = (frames.files.rec, &frames.files);
    let load = |t: u32| frames.load_at(t, opts.size);
    Ok(match opts.keyframes {
        KeyframeMethod::Adaptive | KeyframeMethod::Tas => {
            let plan = adaptive_plan(rec.onset, apex, rec.offset, opts.keyframe_fill)
                .map_err(|m| files.bad(m))?;
            let times: Vec<f64> = plan.times().iter().map(|&t| t as f64).collect();
            if opts.keyframes == KeyframeMethod::Adaptive {
                let anchors: Vec<u32> = plan
                    .nodes
                    .iter()
                    .filter(|n| n.source == Source::Original)
                    .map(|n| n.time)
                    .collect();
                let frames = build_adaptive(&plan, load, interp)?;
                let sources = anchors
                    .iter()
                    .map(|&t| files.source(t))
                    .collect::<Result<Vec<_>>>()?;
                (frames, times, sources)
            } else {
                let mut cache: BTreeMap<u32, GrayFrame> = BTreeMap::new();
                let mut frames = Vec::new();
                for t in plan.times() {
                    let f = match cache.entry(t) {
                        std::collections::btree_map::Entry::Occupied(e) => e.get().clone(),
                        std::collections::btree_map::Entry::Vacant(e) => e.insert(load(t)?).clone(),
                    };
                    frames.push(f);
                }
                let sources = cache
                    .keys()
                    .map(|&t| files.source(t))
                    .collect::<Result<Vec<_>>>()?;
                (frames, times, sources)
            }
        }
        KeyframeMethod::Tim => {
            let all = (rec.onset..=rec.offset)
                .map(load)
                .collect::<Result<Vec<_>>>()?;
            let times = tim_times(rec.onset, rec.offset);
            let pos: Vec<f64> = times.iter().map(|t| t - rec.onset as f64).collect();
            let frames = tim_resample(&all, &pos)?;
            let sources = (rec.onset..=rec.offset)
                .map(|t| files.source(t))
                .collect::<Result<Vec<_>>>()?;
            (frames, times, sources)
        }
    })
}

/// Prepares one clip: face crop, key-frames, flows.
fn prepare_clip(
    rec: &ClipRecord,
    opts: &PrepOptions,
    interp: &dyn FrameInterpolator,
) -> Result<ClipOut> {
    let id = rec.id();
    let files = ClipFiles { rec, id: &id };
    let apex = rec.check()?;
    let onset = files.read(rec.onset)?;
    use opencv::prelude::*;
    let (w, h) = (onset.cols(), onset.rows());
    let crop = onset_face(&files, &onset, opts)?;
    let frames = CroppedFrames {
        files,
        onset,
        w,
        h,
        crop,
    };
    let load = |t: u32| frames.load_at(t, opts.size);
    let (keyframes, times, sources) = clip_keyframes(&frames, apex, opts, interp)?;
    let flow = flow_stack(&keyframes, &opts.flow, opts.magnitude)?;
    let apex_flow = match opts.apex_flow {
        Some(out) => Some(apex_flow_group(
            &load(rec.onset)?,
            &load(apex)?,
            &opts.flow,
            out,
        )?),
        None => None,
    };
    let tim10 = match opts.tim10 {
        Some(g) => {
            let all = (rec.onset..=rec.offset)
                .map(|t| frames.load_at(t, g))
                .collect::<Result<Vec<_>>>()?;
            Some(tim10_group(&all)?)
        }
        None => None,
    };
    let meta = SampleMeta {
        id: id.clone(),
        dataset: rec.dataset,
        subject: rec.subject.clone(),
        filename: rec.filename.clone(),
        emotion: rec.emotion.clone(),
        objective_class: rec.objective_class,
        labels: rec.labels(),
        onset: rec.onset,
        apex,
        offset: rec.offset,
        apex_estimated: rec.apex_estimated,
        keyframe_times: times,
        source_frames: sources,
        crop_box: frames.crop.rect,
        corrections: rec.corrections.clone(),
    };
    Ok(ClipOut {
        meta,
        flow,
        apex_flow,
        tim10,
        fallback: frames.crop.fallback,
    })
}

/// Runs a preparation (see the module docs).
pub fn prepare(opts: &PrepOptions) -> Result<PrepReport> {
    check_sizes(opts)?;
    let (records, missing) = collect_records(opts)?;
    if !missing.is_empty() && !opts.skip_bad {
        let first: Vec<&str> = missing.iter().take(5).map(|(id, _)| id.as_str()).collect();
        return Err(WorkerError::sample(
            first[0],
            format!(
                "{} composite clips not found on disk (e.g. {}); use --skip-bad to leave them out",
                missing.len(),
                first.join(", ")
            ),
        ));
    }
    let interp: Box<dyn FrameInterpolator> = match &opts.interpolator {
        InterpolatorChoice::Farneback => Box::new(FarnebackInterpolator { params: opts.flow }),
        InterpolatorChoice::TorchScript { path, channels } => {
            Box::new(TorchScriptInterpolator::load(path, *channels)?)
        }
    };
    // Fail early (not once per clip) when the cascades are missing.
    FaceDetector::new()?;
    let pool = thread_pool(opts)?;
    // Parallelism is across clips; OpenCV's own thread pool would only oversubscribe the cores.
    if pool.current_num_threads() > 1 {
        let _ = opencv::core::set_num_threads(1);
    }
    let bar = progress_bar(opts, records.len());
    let start = std::time::Instant::now();
    let results: Vec<Result<ClipOut>> = pool.install(|| {
        records
            .par_iter()
            .map(|r| {
                let out = prepare_clip(r, opts, interp.as_ref());
                bar.inc(1);
                out
            })
            .collect()
    });
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let (kept, skipped) = keep_or_skip(opts, &records, results, missing)?;
    if kept.is_empty() {
        return Err(WorkerError::InvalidOption {
            option: "datasets".into(),
            message: "no clip could be prepared".into(),
        });
    }
    let n = kept.len();
    let (prepared, fallbacks) = assemble(opts, interp.as_ref(), kept);
    let skip_report = if opts.skip_bad {
        Some(write_skip_report(&opts.out, &skipped)?)
    } else {
        None
    };
    prepared.write(&opts.out)?;
    let mut per_dataset = BTreeMap::new();
    let mut megc3: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut subjects = std::collections::BTreeSet::new();
    for m in &prepared.samples {
        *per_dataset.entry(m.dataset.key().to_string()).or_insert(0) += 1;
        subjects.insert(m.fold_key());
        if let Some(&l) = m.labels.get("megc3") {
            megc3.entry(m.dataset.key().to_string()).or_default()[l] += 1;
        }
    }
    Ok(PrepReport {
        out: opts.out.clone(),
        samples: n,
        subjects: subjects.len(),
        per_dataset,
        megc3,
        skipped,
        skip_report,
        fallbacks,
        seconds,
    })
}

/// Checks the sizes of the options: the prepared size, the `apex_flow` and the `tim10` group's.
fn check_sizes(opts: &PrepOptions) -> Result<()> {
    if !(16..=1024).contains(&opts.size) {
        return Err(WorkerError::InvalidOption {
            option: "--size".into(),
            message: format!("{} is not in 16..=1024", opts.size),
        });
    }
    if let Some(s) = opts.apex_flow.filter(|s| !(4..=opts.size).contains(s)) {
        return Err(WorkerError::InvalidOption {
            option: "--apex-flow-size".into(),
            message: format!("{s} is not in 4..={} (the prepared size)", opts.size),
        });
    }
    if let Some(s) = opts.tim10.filter(|s| !(16..=1024).contains(s)) {
        return Err(WorkerError::InvalidOption {
            option: "--tim10-size".into(),
            message: format!("{s} is not in 16..=1024"),
        });
    }
    Ok(())
}

/// The thread pool the clips are prepared on (`opts.threads`, or rayon's default).
fn thread_pool(opts: &PrepOptions) -> Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(t) = opts.threads {
        b = b.num_threads(t.max(1));
    }
    b.build().map_err(|e| WorkerError::InvalidOption {
        option: "--threads".into(),
        message: e.to_string(),
    })
}

/// The progress bar over `clips` clips (hidden unless `opts.progress`).
fn progress_bar(opts: &PrepOptions, clips: usize) -> indicatif::ProgressBar {
    let bar = if opts.progress {
        indicatif::ProgressBar::new(clips as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} clips ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The prepared clips, and the clips left out (`missing` first, then the failed ones); a failed clip
/// fails the run unless `opts.skip_bad`.
fn keep_or_skip(
    opts: &PrepOptions,
    records: &[ClipRecord],
    results: Vec<Result<ClipOut>>,
    missing: Vec<Skipped>,
) -> Result<(Vec<ClipOut>, Vec<Skipped>)> {
    let mut skipped = missing;
    let mut kept = Vec::new();
    for (rec, res) in records.iter().zip(results) {
        match res {
            Ok(o) => kept.push(o),
            Err(e) if opts.skip_bad => {
                tracing::warn!(sample = %rec.id(), "left out: {e}");
                skipped.push((rec.id(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((kept, skipped))
}

/// The prepared file of the `kept` clips, and how many of them used the full-frame fallback.
fn assemble(
    opts: &PrepOptions,
    interp: &dyn FrameInterpolator,
    kept: Vec<ClipOut>,
) -> (Prepared, usize) {
    let c = if opts.magnitude { 3 } else { 2 };
    let s = opts.size as usize;
    let n = kept.len();
    let mut flow = Vec::with_capacity(n * c * 10 * s * s);
    let mut samples = Vec::with_capacity(n);
    let mut fallbacks = 0;
    let mut apex_flow = opts.apex_flow.map(|_| Vec::new());
    let mut tim10 = opts.tim10.map(|_| Vec::new());
    for o in kept {
        flow.extend_from_slice(&o.flow);
        if let (Some(all), Some(v)) = (apex_flow.as_mut(), &o.apex_flow) {
            all.extend_from_slice(v);
        }
        if let (Some(all), Some(v)) = (tim10.as_mut(), &o.tim10) {
            all.extend_from_slice(v);
        }
        fallbacks += o.fallback as usize;
        samples.push(o.meta);
    }
    let prepared = Prepared {
        info: prep_info(opts, interp),
        samples,
        shape: [n, c, 10, s, s],
        flow,
        groups: mer_shared::prepared::Groups { apex_flow, tim10 },
    };
    (prepared, fallbacks)
}

/// The prepared file's description of how it was made.
fn prep_info(opts: &PrepOptions, interp: &dyn FrameInterpolator) -> PrepInfo {
    let mut channels = vec!["u".to_string(), "v".to_string()];
    if opts.magnitude {
        channels.push("magnitude".into());
    }
    PrepInfo {
        keyframes: opts.keyframes.key().into(),
        interpolator: match opts.keyframes {
            KeyframeMethod::Adaptive => interp.name(),
            KeyframeMethod::Tas => "none (original frames)".into(),
            KeyframeMethod::Tim => "tim (path-graph embedding)".into(),
        },
        flow_params: opts.flow.to_map(),
        size: opts.size,
        frames: 10,
        channels,
        crop: if opts.face_fallback {
            "haar-eyes, full-frame fallback on".into()
        } else {
            "haar-eyes".into()
        },
        mer_version: env!("CARGO_PKG_VERSION").into(),
        keyframe_fill: match opts.keyframes {
            KeyframeMethod::Adaptive | KeyframeMethod::Tas => Some(opts.keyframe_fill),
            KeyframeMethod::Tim => None,
        },
        apex_flow: opts
            .apex_flow
            .map(|size| mer_shared::prepared::ApexFlowInfo {
                size,
                channels: vec!["u".into(), "v".into(), "strain".into()],
            }),
        tim10: opts.tim10.map(|size| mer_shared::prepared::Tim10Info {
            size,
            frames: TIM10_FRAMES as u32,
        }),
    }
}

/// Writes the skip report of `out` (`<out>.skipped.tsv`: sample id, reason) and returns its path.
fn write_skip_report(out: &Path, skipped: &[Skipped]) -> Result<PathBuf> {
    let p = skip_report_path(out);
    let mut text = String::from("sample\treason\n");
    for (id, why) in skipped {
        text += &format!("{id}\t{}\n", why.replace(['\t', '\n'], " "));
    }
    mer_shared::fs::write_atomic(&p, text.as_bytes())?;
    Ok(p)
}

/// The optional tensor groups a file holds, with their shapes and the methods that read them (or how to
/// add them), for `mer prep inspect`.
pub fn optional_groups(info: &PrepInfo, n: usize) -> String {
    use mer_shared::method::{InputGroup, Method};
    let users = |g: InputGroup| {
        Method::ALL
            .iter()
            .filter(|m| m.inputs().contains(&g))
            .map(|m| m.key())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if let Some(a) = &info.apex_flow {
        parts.push(format!(
            "apex_flow f32 [{n}, 3, {s}, {s}] ({}; for {})",
            a.channels.join(","),
            users(InputGroup::ApexFlow),
            s = a.size
        ));
    }
    if let Some(t) = &info.tim10 {
        parts.push(format!(
            "tim10 u8 [{n}, {}, {s}, {s}] (gray; for {})",
            t.frames,
            users(InputGroup::Tim10),
            s = t.size
        ));
    }
    let missing: Vec<String> = [InputGroup::ApexFlow, InputGroup::Tim10]
        .into_iter()
        .filter(|g| !info.has_group(*g))
        .map(|g| format!("{} (add with {}; for {})", g.key(), g.prep_flag(), users(g)))
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    if missing.is_empty() {
        parts.join("; ")
    } else {
        format!("{}; absent: {}", parts.join("; "), missing.join("; "))
    }
}

/// Counts of a prepared file, for `mer prep inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// Tensor shape.
    pub shape: [usize; 5],
    /// How the file was made.
    pub info: PrepInfo,
    /// Samples per dataset.
    pub per_dataset: BTreeMap<Dataset, usize>,
    /// Samples per (dataset, subject).
    pub per_subject: BTreeMap<(Dataset, String), usize>,
    /// Per scheme: per dataset: count per class index.
    pub per_class: BTreeMap<String, BTreeMap<Dataset, BTreeMap<usize, usize>>>,
}

/// Reads a prepared file and counts samples per dataset, subject and class.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let p = Prepared::read(path)?;
    let mut ins = Inspection {
        shape: p.shape,
        info: p.info.clone(),
        per_dataset: BTreeMap::new(),
        per_subject: BTreeMap::new(),
        per_class: BTreeMap::new(),
    };
    for m in &p.samples {
        *ins.per_dataset.entry(m.dataset).or_insert(0) += 1;
        *ins.per_subject
            .entry((m.dataset, m.subject.clone()))
            .or_insert(0) += 1;
        for (scheme, &l) in &m.labels {
            *ins.per_class
                .entry(scheme.clone())
                .or_default()
                .entry(m.dataset)
                .or_default()
                .entry(l)
                .or_insert(0) += 1;
        }
    }
    Ok(ins)
}

impl Inspection {
    /// The report `mer prep inspect` prints.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "flow tensor [N, C, T, H, W] = {:?}; key-frames {}{}, interpolator {}, crop {}, channels {}\n",
            self.shape,
            self.info.keyframes,
            match self.info.keyframe_fill_rule() {
                Some(f) => format!(" (fill {f})"),
                None => String::new(),
            },
            self.info.interpolator,
            self.info.crop,
            self.info.channels.join(",")
        );
        s += &format!(
            "optional groups: {}\n",
            optional_groups(&self.info, self.shape[0])
        );
        let subjects: std::collections::BTreeSet<_> = self.per_subject.keys().collect();
        s += &format!(
            "samples {}, subjects {}\n\nper dataset:\n",
            self.shape[0],
            subjects.len()
        );
        for (d, n) in &self.per_dataset {
            let subj = self.per_subject.keys().filter(|(dd, _)| dd == d).count();
            s += &format!("  {:<7} {n:>5} clips {subj:>3} subjects\n", d.key());
        }
        for (scheme, by_d) in &self.per_class {
            let sch: mer_shared::LabelScheme = match scheme.parse() {
                Ok(x) => x,
                Err(_) => continue,
            };
            s += &format!("\nper class ({scheme}):\n");
            let mut total = vec![0usize; sch.num_classes()];
            for (d, counts) in by_d {
                let names = sch.class_names(Some(*d));
                let parts: Vec<String> = (0..sch.num_classes())
                    .map(|c| format!("{} {}", names[c], counts.get(&c).copied().unwrap_or(0)))
                    .collect();
                for (c, t) in total.iter_mut().enumerate() {
                    *t += counts.get(&c).copied().unwrap_or(0);
                }
                s += &format!("  {:<7} {}\n", d.key(), parts.join(", "));
            }
            if scheme != "emotion5" {
                let names = sch.class_names(None);
                let parts: Vec<String> = total
                    .iter()
                    .enumerate()
                    .map(|(c, n)| format!("{} {n}", names[c]))
                    .collect();
                s += &format!("  {:<7} {}\n", "all", parts.join(", "));
            }
        }
        s += "\nper subject:\n";
        for ((d, subj), n) in &self.per_subject {
            s += &format!("  {}/{subj} {n}\n", d.key());
        }
        s
    }
}

//! `mer synth` and `mer prep`: synthetic datasets in the real layouts, and preparation of datasets into ONE
//! prepared optical-flow file (safetensors).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mer_worker::prep::keyframes::{KeyframeFill, KeyframeMethod};
use mer_worker::prep::pipeline::{InterpolatorChoice, PrepOptions};
use mer_worker::synth::{Casme2Layout, Preset, SynthOptions};
use std::path::PathBuf;

/// Data subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a synthetic micro-expression dataset (CASME II, SAMM and SMIC-HS in their real on-disk layouts,
    /// with annotation workbooks) for tests and the demo.
    Synth(SynthArgs),
    /// Prepare datasets into one optical-flow file: face crop, 11 key-frames, 10 Farneback flows per clip.
    /// `mer prep inspect FILE` prints the counts of a prepared file.
    Prep(Box<PrepArgs>),
}

/// `mer synth` arguments.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Size preset: tiny (tests, seconds), mini (the demo: 48 clips, 10 subjects), composite (the 442 clips,
    /// 68 subjects, names and labels of the official MEGC2019 list); with real face photographs, FACS
    /// action units, label-free nuisances and noisy annotations (docs/synthetic.md): realistic-tiny,
    /// realistic (every third composite subject: 24 subjects, 171 clips), realistic-composite.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (gets casme2/, samm/, smic/ and synth.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Write CASME II in the `Cropped/` layout (reg_imgN.jpg) instead of `CASME2_RAW_selected/`.
    #[arg(long)]
    pub casme2_cropped: bool,
    /// Also write the SMIC-E layout (smic-e/: SMIC-HS-E_annotation.xlsx + SMIC-HS-E/).
    #[arg(long)]
    pub smic_e: bool,
    /// Also write the newer sets' layouts, tiny-sized (3 subjects each): casme3a/ and casme3c/
    /// (CAS(ME)^3 parts A and C), 4dme/ and mmew/, with their workbooks.
    #[arg(long)]
    pub newer_parts: bool,
    /// Per-clip action intensity range `MIN,MAX`, as multiples of the base amplitude (7.5 % of the face
    /// half-width). Default: 0.85,1.15 for tiny, 0.12,0.8 for mini and composite. Realistic presets: peak
    /// displacement in pixels at a 112 px face crop, drawn log-uniformly; default 0.25,2.5.
    #[arg(long, value_parser = parse_range)]
    pub intensity: Option<(f32, f32)>,
    /// Probability that a clip also carries a weaker action of another class (co-occurring action units).
    /// Default: 0 for tiny, 0.7 for mini and composite, 0.15 for the realistic presets.
    #[arg(long)]
    pub co_action: Option<f64>,
    /// The face photographs of the realistic presets: scikit-image's `lfw_subset.npy`. Default:
    /// $MER_FACES, else the one in the project's .venv (installed by scripts/bootstrap.sh).
    #[arg(long)]
    pub faces: Option<PathBuf>,
}

/// Parses `MIN,MAX`.
fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}': expected MIN,MAX"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<f32>()
            .map_err(|e| format!("'{s}': '{x}' is not a number ({e})"))
    };
    Ok((num(a)?, num(b)?))
}

/// `mer prep` arguments: either a preparation run, or `inspect FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PrepArgs {
    /// `inspect FILE`.
    #[command(subcommand)]
    pub action: Option<PrepAction>,
    /// Run options.
    #[command(flatten)]
    pub run: PrepRunArgs,
}

/// `mer prep` sub-actions.
#[derive(Debug, Subcommand)]
pub enum PrepAction {
    /// Print counts per dataset, subject and class of a prepared file.
    Inspect {
        /// The prepared `.safetensors` file.
        file: PathBuf,
    },
}

/// Options of a preparation run.
#[derive(Debug, Args)]
pub struct PrepRunArgs {
    /// CASME II root (CASME2-coding-*.xlsx + CASME2_RAW_selected/ or Cropped/).
    #[arg(long)]
    pub casme2: Option<PathBuf>,
    /// SAMM root (SAMM_Micro_FACS_Codes_v2.xlsx + SAMM/).
    #[arg(long)]
    pub samm: Option<PathBuf>,
    /// SMIC-HS root in the original layout (HS/sN/micro/<class>/<clip>/).
    #[arg(long)]
    pub smic: Option<PathBuf>,
    /// SMIC-E root (SMIC-HS-E_annotation.xlsx + SMIC-HS-E/); instead of --smic.
    #[arg(long)]
    pub smic_e: Option<PathBuf>,
    /// CAS(ME)^3 part A root (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx + <Subject>/<Filename>/color/).
    #[arg(long)]
    pub casme3a: Option<PathBuf>,
    /// CAS(ME)^3 part C root (CAS(ME)3_part_C_ME.xlsx + <sub>/<count>/color/).
    #[arg(long)]
    pub casme3c: Option<PathBuf>,
    /// 4DME root (4DME_Labelling_Micro_release v1.xlsx + gray_micro/<subject>/<fold_name>/).
    #[arg(long)]
    pub fourdme: Option<PathBuf>,
    /// MMEW root (MMEW_Micro_Exp.xlsx + Micro_Expression/<emotion>/<Filename>/).
    #[arg(long)]
    pub mmew: Option<PathBuf>,
    /// Keep only the official MEGC2019 composite clips (442), with the list's 3-class labels.
    #[arg(long)]
    pub composite: bool,
    /// Use this copy of the composite list (CSV: dataset,subject,filename,label) instead of the shipped one.
    #[arg(long, requires = "composite")]
    pub composite_list: Option<PathBuf>,
    /// Key-frame construction: adaptive (Algorithm 1), tas (original frames at the adaptive times) or tim.
    #[arg(long, default_value = "adaptive")]
    pub keyframes: String,
    /// How adaptive/TAS key-frames are filled where bisection runs out: algorithm1 (the paper's Algorithm 1
    /// as printed) or widest-gap (the earlier rule, kept for ablations). Recorded in the prepared file.
    #[arg(long, default_value = "algorithm1")]
    pub keyframe_fill: String,
    /// Output size in pixels (square).
    #[arg(long, default_value_t = 112)]
    pub size: u32,
    /// Also store the flow magnitude as a third channel.
    #[arg(long)]
    pub magnitude: bool,
    /// Also store the onset->apex flow (u, v) and its optical strain, for the STSTNet and OFF-ApexNet
    /// methods (the `apex_flow` group).
    #[arg(long)]
    pub apex_flow: bool,
    /// Side of the `apex_flow` group's square (the originals: 28).
    #[arg(long, default_value_t = 28, requires = "apex_flow")]
    pub apex_flow_size: u32,
    /// Also store the face crop's frames from onset to offset, TIM-interpolated to 10 frames, for the
    /// LBP-TOP + SVM method (the `tim10` group).
    #[arg(long)]
    pub tim10: bool,
    /// Side of the `tim10` group's square (default: --size).
    #[arg(long, requires = "tim10")]
    pub tim10_size: Option<u32>,
    /// Every optional group: --apex-flow and --tim10.
    #[arg(long)]
    pub baseline_inputs: bool,
    /// Leave bad clips out (listed in <out>.skipped.tsv) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Annotation corrections (TOML: [[correction]] sample, field, value, reason).
    #[arg(long)]
    pub corrections: Option<PathBuf>,
    /// Where no face is found, crop the central square of the full frame instead of failing the clip.
    #[arg(long)]
    pub face_fallback: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A TorchScript frame interpolator (forward(a, b) -> middle, [1,C,H,W] in 0..1) instead of the default
    /// Farneback warp-and-blend.
    #[arg(long)]
    pub interpolator: Option<PathBuf>,
    /// Input channels of the TorchScript interpolator (1 or 3).
    #[arg(long, default_value_t = 3)]
    pub interp_channels: i64,
    /// Output file (.safetensors), written atomically.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl PrepRunArgs {
    /// Converts the arguments into library options.
    pub fn to_options(&self) -> anyhow::Result<PrepOptions> {
        let Some(out) = self.out.clone() else {
            bail!("--out FILE is required (or use `mer prep inspect FILE`)")
        };
        let keyframes: KeyframeMethod = self.keyframes.parse()?;
        let keyframe_fill: KeyframeFill = self
            .keyframe_fill
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--keyframe-fill: {e}"))?;
        Ok(PrepOptions {
            casme2: self.casme2.clone(),
            samm: self.samm.clone(),
            smic: self.smic.clone(),
            smic_e: self.smic_e.clone(),
            casme3a: self.casme3a.clone(),
            casme3c: self.casme3c.clone(),
            fourdme: self.fourdme.clone(),
            mmew: self.mmew.clone(),
            composite: self.composite,
            composite_list: self.composite_list.clone(),
            keyframes,
            keyframe_fill,
            size: self.size,
            magnitude: self.magnitude,
            skip_bad: self.skip_bad,
            corrections: self.corrections.clone(),
            face_fallback: self.face_fallback,
            threads: self.threads,
            interpolator: match &self.interpolator {
                Some(p) => InterpolatorChoice::TorchScript {
                    path: p.clone(),
                    channels: self.interp_channels,
                },
                None => InterpolatorChoice::Farneback,
            },
            apex_flow: (self.apex_flow || self.baseline_inputs).then_some(self.apex_flow_size),
            tim10: (self.tim10 || self.baseline_inputs)
                .then_some(self.tim10_size.unwrap_or(self.size)),
            out,
            progress: !self.no_progress,
            ..Default::default()
        })
    }
}

/// Runs a data subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Synth(a) => {
            let preset: Preset = a.preset.parse()?;
            let mut opts = SynthOptions::new(preset, a.seed);
            if a.casme2_cropped {
                opts.casme2_layout = Casme2Layout::Cropped;
            }
            opts.smic_e = a.smic_e;
            opts.newer_parts = a.newer_parts;
            if let Some(r) = a.intensity {
                opts.intensity = r;
            }
            if let Some(p) = a.co_action {
                opts.co_action = p;
            }
            opts.faces = a.faces;
            let t = std::time::Instant::now();
            let s = mer_worker::synth::generate_with(&opts, &a.out)
                .with_context(|| format!("generating into {}", a.out.display()))?;
            println!(
                "wrote {} frames in {:.1} s to {}",
                s.frames_written,
                t.elapsed().as_secs_f64(),
                a.out.display()
            );
            for (d, n) in &s.clips {
                println!(
                    "  {d:<7} {n:>4} clips {:>3} subjects",
                    s.subjects.get(d).copied().unwrap_or(0)
                );
            }
            let mut roots = format!(
                "--casme2 {} --samm {} --smic {}",
                s.casme2.display(),
                s.samm.display(),
                s.smic.display()
            );
            for (flag, root) in [
                ("casme3a", &s.casme3a),
                ("casme3c", &s.casme3c),
                ("fourdme", &s.fourdme),
                ("mmew", &s.mmew),
            ] {
                if let Some(r) = root {
                    roots.push_str(&format!(" --{flag} {}", r.display()));
                }
            }
            println!("prepare with: mer prep {roots} --out prepared.safetensors");
            Ok(())
        }
        DataCommand::Prep(p) => match p.action {
            Some(PrepAction::Inspect { file }) => {
                let ins = mer_worker::prep::pipeline::inspect(&file)?;
                print!("{}", ins.to_text());
                Ok(())
            }
            None => {
                let opts = p.run.to_options()?;
                let r = mer_worker::prep::pipeline::prepare(&opts)?;
                print!("{}", r.to_text());
                Ok(())
            }
        },
    }
}

/// `mer bench prep`: generates a synthetic preset in a temporary folder, prepares it, prints clips/s.
pub fn bench_prep(preset: &str, threads: Option<usize>, seed: u64) -> anyhow::Result<()> {
    let preset: Preset = preset.parse()?;
    let dir = std::env::temp_dir().join(format!("mer-bench-prep-{}", std::process::id()));
    let res = (|| -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        let s = mer_worker::synth::generate(preset, seed, &dir)?;
        let synth_s = t.elapsed().as_secs_f64();
        let mut opts = s.prep_options(dir.join("prepared.safetensors"));
        opts.threads = threads;
        let t = std::time::Instant::now();
        let r = mer_worker::prep::pipeline::prepare(&opts)?;
        let total = t.elapsed().as_secs_f64();
        println!(
            "synth: {} frames in {synth_s:.2} s ({:.0} frames/s)",
            s.frames_written,
            s.frames_written as f64 / synth_s
        );
        println!(
            "prep: {} clips in {:.2} s = {:.2} clips/s (clip processing), {:.2} clips/s end to end incl. reading annotations and writing; threads {}",
            r.samples,
            r.seconds,
            r.clips_per_sec(),
            r.samples as f64 / total,
            threads.map(|t| t.to_string()).unwrap_or_else(|| format!("{} (all cores)", rayon_threads())),
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

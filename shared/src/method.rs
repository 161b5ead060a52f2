//! The recognition methods an experiment can run on the same LOSO folds, what each needs from the prepared
//! file, and each baseline's own settings table (`[methods.<name>]` in a spec, the originals' values as
//! defaults). MERSiamC3D's settings are `[train]` ([`crate::train_config::TrainConfig`]); the baselines
//! share only `train.device`, `train.threads` and `train.seed` with it.
//!
//! Where each default comes from, and every choice the originals leave open, is `docs/methods.md`.

pub use crate::user_method::{UserInput, UserMethodConfig, UserMethodTask};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A recognition method (`method = "..."` in a spec, or a `[sweep] method = [...]` axis): one of the four
/// built-ins, or a method the spec defines itself with a `[methods.<name>]` table that has a `command`
/// ([`crate::user_method`]). In specs, payloads and results it is its name, a plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Method {
    /// Zhao et al. 2021: siamese prior learning, then target learning with frozen conv layers and a focal
    /// loss on 10 adaptive key-frame flows (the project's engine; the default).
    #[default]
    Mersiamc3d,
    /// Liong et al. 2019: onset->apex u, v and optical strain at 28x28 through three shallow parallel
    /// conv streams.
    Ststnet,
    /// Gan et al. 2019: onset->apex u and v at 28x28 as two conv streams, fused by dense layers.
    Offapexnet,
    /// The MEGC2019 official baseline: LBP-TOP histograms of TIM-10 face crops and a linear SVM.
    LbptopSvm,
    /// A user-defined method: any training command run on the fold contract (`docs/own-model.md`),
    /// named by the key of its `[methods.<name>]` table.
    User(String),
}

impl Method {
    /// Every built-in method, in the order tables list them.
    pub const ALL: [Method; 4] = [
        Method::Mersiamc3d,
        Method::Ststnet,
        Method::Offapexnet,
        Method::LbptopSvm,
    ];

    /// The name in specs, task payloads, results and tables.
    pub fn key(&self) -> &str {
        match self {
            Method::Mersiamc3d => "mersiamc3d",
            Method::Ststnet => "ststnet",
            Method::Offapexnet => "offapexnet",
            Method::LbptopSvm => "lbptop_svm",
            Method::User(name) => name,
        }
    }

    /// The name in report tables (as the papers write it; a user method's own name).
    pub fn display_name(&self) -> &str {
        match self {
            Method::Mersiamc3d => "MERSiamC3D",
            Method::Ststnet => "STSTNet",
            Method::Offapexnet => "OFF-ApexNet",
            Method::LbptopSvm => "LBP-TOP + SVM",
            Method::User(name) => name,
        }
    }

    /// True for a method defined by the spec (`[methods.<name>] command = ...`).
    pub fn is_user(&self) -> bool {
        matches!(self, Method::User(_))
    }

    /// Whether the method has a prior-learning stage (a task per fold that target tasks depend on).
    pub fn has_prior(&self) -> bool {
        *self == Method::Mersiamc3d
    }

    /// The optional tensor groups of the prepared file a built-in method reads (the 10-frame key-frame
    /// flow, which every prepared file holds, is not listed). A user method's come from its table
    /// ([`MethodsConfig::inputs_of`]), so this is empty for it.
    pub fn inputs(&self) -> &'static [InputGroup] {
        match self {
            Method::Mersiamc3d | Method::User(_) => &[],
            Method::Ststnet | Method::Offapexnet => &[InputGroup::ApexFlow],
            Method::LbptopSvm => &[InputGroup::Tim10],
        }
    }

    /// The built-in method named `s` (case-insensitive), or an error listing them.
    pub fn builtin(s: &str) -> Result<Method, String> {
        let t = s.trim().to_ascii_lowercase();
        Method::ALL
            .into_iter()
            .find(|m| m.key() == t)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.key()).collect();
                format!("'{s}' is not a built-in method ({})", names.join(", "))
            })
    }

    /// The method named `s`: a built-in by its name, anything else that is a valid method name a user
    /// method (whether the spec defines it is checked against the spec).
    pub fn named(s: &str) -> Result<Method, String> {
        if let Ok(m) = Method::builtin(s) {
            return Ok(m);
        }
        if crate::user_method::is_method_name(s) {
            Ok(Method::User(s.to_string()))
        } else {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.key()).collect();
            Err(format!(
                "'{s}' is neither a built-in method ({}) nor a valid name for one of your own (letters, digits, '_' and '-', starting with a letter)",
                names.join(", ")
            ))
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::named(s)
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Method::named(&s).map_err(serde::de::Error::custom)
    }
}

/// An optional group of tensors `mer prep` can add to a prepared file for the baseline methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputGroup {
    /// Onset->apex Farneback flow (u, v) and its optical strain, area-resized to a small square
    /// (`apex_flow` tensor, f32 `[N, 3, S, S]`).
    ApexFlow,
    /// The face crop's gray frames from onset to offset, TIM-interpolated to 10 frames (`tim10` tensor,
    /// u8 `[N, 10, G, G]`).
    Tim10,
}

impl InputGroup {
    /// The group's tensor name in the prepared file (and its name in `mer prep inspect`).
    pub fn key(self) -> &'static str {
        match self {
            InputGroup::ApexFlow => "apex_flow",
            InputGroup::Tim10 => "tim10",
        }
    }

    /// The `mer prep` flag that adds the group.
    pub fn prep_flag(self) -> &'static str {
        match self {
            InputGroup::ApexFlow => "--apex-flow",
            InputGroup::Tim10 => "--tim10",
        }
    }
}

impl UserInput {
    /// The optional prepared-file group it needs (`None`: the flow every file holds).
    pub fn group(self) -> Option<InputGroup> {
        match self {
            UserInput::Flow => None,
            UserInput::ApexFlow => Some(InputGroup::ApexFlow),
            UserInput::Tim10 => Some(InputGroup::Tim10),
        }
    }
}

/// The `[methods]` table: the baselines' settings (`[methods.ststnet]`, `[methods.offapexnet]`,
/// `[methods.lbptop_svm]`, the originals' values by default) and the spec's own methods (`[methods.<name>]`
/// with a `command`, [`UserMethodConfig`]). Serialised with the three built-in tables first, so a spec
/// without methods of its own keeps its hash.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MethodsConfig {
    /// STSTNet's settings.
    pub ststnet: StstnetConfig,
    /// OFF-ApexNet's settings.
    pub offapexnet: OffApexNetConfig,
    /// LBP-TOP + SVM's settings.
    pub lbptop_svm: LbpTopSvmConfig,
    /// The spec's own methods, by name.
    pub user: BTreeMap<String, UserMethodConfig>,
}

impl MethodsConfig {
    /// The resolved settings a task of built-in `method` carries (`None` for MERSiamC3D, whose settings
    /// are `[train]`, and for a user method, whose points come from [`UserMethodConfig::points`]).
    pub fn settings(&self, method: &Method) -> Option<BaselineSettings> {
        match method {
            Method::Mersiamc3d | Method::User(_) => None,
            Method::Ststnet => Some(BaselineSettings::Ststnet(self.ststnet.clone())),
            Method::Offapexnet => Some(BaselineSettings::Offapexnet(self.offapexnet.clone())),
            Method::LbptopSvm => Some(BaselineSettings::LbptopSvm(self.lbptop_svm.clone())),
        }
    }

    /// The optional prepared-file groups `method` reads (a user method's from its `inputs`).
    pub fn inputs_of(&self, method: &Method) -> Vec<InputGroup> {
        match method {
            Method::User(name) => self
                .user
                .get(name)
                .map(|u| u.inputs.iter().filter_map(|i| i.group()).collect())
                .unwrap_or_default(),
            m => m.inputs().to_vec(),
        }
    }
}

impl Serialize for MethodsConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3 + self.user.len()))?;
        m.serialize_entry("ststnet", &self.ststnet)?;
        m.serialize_entry("offapexnet", &self.offapexnet)?;
        m.serialize_entry("lbptop_svm", &self.lbptop_svm)?;
        for (name, u) in &self.user {
            m.serialize_entry(name, u)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for MethodsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MethodsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of method settings keyed by method name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MethodsConfig, A::Error> {
                use serde::de::Error;
                let mut c = MethodsConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "ststnet" => c.ststnet = map.next_value()?,
                        "offapexnet" => c.offapexnet = map.next_value()?,
                        "lbptop_svm" => c.lbptop_svm = map.next_value()?,
                        "mersiamc3d" => return Err(A::Error::custom(
                            "MERSiamC3D's settings are the [train] table, not [methods.mersiamc3d]",
                        )),
                        name => {
                            if !crate::user_method::is_method_name(name) {
                                return Err(A::Error::custom(format!(
                                    "[methods.{name}]: a method name uses letters, digits, '_' and '-' and starts with a letter"
                                )));
                            }
                            let u: UserMethodConfig = map.next_value()?;
                            c.user.insert(name.to_string(), u);
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// Which onset->apex motion the two apex-flow CNNs read (`input` in `[methods.ststnet]` /
/// `[methods.offapexnet]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CnnInput {
    /// The prepared file's `apex_flow` group: one Farneback flow from the onset frame straight to the apex
    /// frame, with its strain (the originals' input; the default).
    #[default]
    ApexFlow,
    /// MERSiamC3D's own input turned into the same form: the prepared key-frame flows summed from the
    /// first key-frame to the one nearest the apex ([`crate::prepared::SampleMeta::apex_keyframe`]), then
    /// the `apex_flow` group's strain and area resize to that group's square. It swaps only the source of
    /// the motion, so a baseline run with it measures how much of the network's score the key-frame flows
    /// carry (a diagnostic of where MERSiamC3D loses signal: its input or its network).
    KeyframeSum,
}

impl CnnInput {
    /// True for the default, which task keys leave out so that keys of specs without it stay unchanged.
    pub fn is_apex_flow(&self) -> bool {
        *self == CnnInput::ApexFlow
    }
}

/// Training settings of the two small apex-flow CNNs (both are trained the same way: Adam, softmax
/// cross-entropy, a fixed epoch budget, no epoch selection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StstnetConfig {
    /// Epochs (fixed budget; the authors' PyTorch code: 800).
    pub epochs: usize,
    /// Mini-batch size (authors' code: 256).
    pub batch_size: usize,
    /// Adam learning rate (authors' code: 0.00005).
    pub lr: f64,
    /// Dropout after each stream's pooling (authors' code: 0.5).
    pub dropout: f64,
    /// Shuffle the training samples every epoch (the authors' loader does not shuffle).
    pub shuffle: bool,
    /// Which onset->apex motion it reads (default: the `apex_flow` group, as the authors).
    #[serde(skip_serializing_if = "CnnInput::is_apex_flow")]
    pub input: CnnInput,
}

impl Default for StstnetConfig {
    fn default() -> Self {
        StstnetConfig {
            epochs: 800,
            batch_size: 256,
            lr: 0.00005,
            dropout: 0.5,
            shuffle: false,
            input: CnnInput::ApexFlow,
        }
    }
}

/// OFF-ApexNet's settings (architecture: `mer_worker::baselines::offapexnet`). The paper (Gan et al. 2019)
/// could not be read from here; the training numbers below are the values commonly quoted from it and were
/// not checked against its text. Where it is silent or unread, the choice is ours and says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffApexNetConfig {
    /// Epochs (fixed budget; 3000, as quoted from the paper).
    pub epochs: usize,
    /// Mini-batch size (256: not from the paper; the same as STSTNet's authors' code, so both CNNs train
    /// alike).
    pub batch_size: usize,
    /// Adam learning rate (0.0001, as quoted from the paper; Adam with PyTorch's default betas).
    pub lr: f64,
    /// Units of each of the two hidden dense layers (paper: 1024).
    pub dense: i64,
    /// Dropout after each of the two hidden dense layers, i.e. on the inputs of the second dense layer and
    /// of the output layer (0.5, as in the public PyTorch re-implementation in the Off-TANet repository).
    pub dropout: f64,
    /// Shuffle the training samples every epoch (our choice: the usual mini-batch training; the paper's
    /// loader is not known).
    pub shuffle: bool,
    /// Which onset->apex motion it reads (default: the `apex_flow` group, as the paper).
    #[serde(skip_serializing_if = "CnnInput::is_apex_flow")]
    pub input: CnnInput,
}

impl Default for OffApexNetConfig {
    fn default() -> Self {
        OffApexNetConfig {
            epochs: 3000,
            batch_size: 256,
            lr: 0.0001,
            dense: 1024,
            dropout: 0.5,
            shuffle: true,
            input: CnnInput::ApexFlow,
        }
    }
}

/// LBP-TOP + linear SVM settings (the MEGC2019 baseline's: See et al., "MEGC 2019 - The Second Facial
/// Micro-Expressions Grand Challenge", FG 2019, LBP-TOP after Zhao & Pietikäinen, TPAMI 2007, on
/// TIM-10 frames). The features are defined in `mer_worker::baselines::lbptop` (skimage's `nri_uniform`
/// conventions, bilinear sampling on an ellipse per plane), the classifier in
/// `mer_worker::baselines::svm` (one-vs-rest linear C-SVC, linfa-svm).
///
/// Sources of the defaults: the block grid and radii are the values this project has used for the
/// MEGC2019 baseline (5 x 5 blocks, radii 1, 1, 4, as in the CASME II LBP-TOP baseline that MEGC's
/// follows); the FG 2019 paper's text could not be consulted while this was written, so they are not
/// checked against it, and the paper's C is not known here (C = 1 is libsvm's / scikit-learn's default).
/// For comparison, MEB (github.com/tvaranka/meb, `meb/utils/traditional_methods.py`,
/// `calculate_lbptop`) uses another setting: 8 x 8 blocks with 70 % overlap, radii 3, 3, 3, 8
/// neighbours (8 x 8 x 3 x 59 = 11328 features), nearest-pixel sampling as in Zhao's MATLAB code, and
/// scikit-learn's `SVC` for the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbpTopSvmConfig {
    /// Blocks the face is cut into: rows x columns (MEGC2019 baseline: 5 x 5). Rows are assigned by
    /// `y * rows / h` (columns likewise), so block sizes differ by at most one pixel.
    pub blocks: [usize; 2],
    /// Sampling radius in x, y and t (MEGC2019 baseline: 1, 1, 4): XY samples on the Rx x Ry ellipse,
    /// XT on Rx x Rt, YT on Ry x Rt. Only centres at least R from every border count, so a TIM-10 clip
    /// with Rt = 4 contributes the centres of frames 4 and 5.
    pub radius: [usize; 3],
    /// Neighbours sampled on each of the XY, XT and YT planes (8; uniform patterns: 59 bins).
    pub neighbours: usize,
    /// The SVM's regularisation constant C (the same for both sides of every one-vs-rest problem).
    pub c: f64,
    /// Scale every feature to zero mean and unit variance on the fold's training samples.
    pub standardise: bool,
}

impl Default for LbpTopSvmConfig {
    fn default() -> Self {
        LbpTopSvmConfig {
            blocks: [5, 5],
            radius: [1, 1, 4],
            neighbours: 8,
            c: 1.0,
            standardise: false,
        }
    }
}

/// A baseline task's resolved settings, tagged with the method's name (what a task payload carries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum BaselineSettings {
    /// STSTNet.
    Ststnet(StstnetConfig),
    /// OFF-ApexNet.
    Offapexnet(OffApexNetConfig),
    /// LBP-TOP + SVM.
    LbptopSvm(LbpTopSvmConfig),
    /// A user-defined method's command, files, inputs and this point's params.
    User(UserMethodTask),
}

impl BaselineSettings {
    /// Which method these settings belong to.
    pub fn method(&self) -> Method {
        match self {
            BaselineSettings::Ststnet(_) => Method::Ststnet,
            BaselineSettings::Offapexnet(_) => Method::Offapexnet,
            BaselineSettings::LbptopSvm(_) => Method::LbptopSvm,
            BaselineSettings::User(u) => Method::User(u.name.clone()),
        }
    }

    /// The fixed epoch budget of a trained network (`None` for LBP-TOP + SVM, which has no epochs).
    pub fn epochs(&self) -> Option<usize> {
        match self {
            BaselineSettings::Ststnet(c) => Some(c.epochs),
            BaselineSettings::Offapexnet(c) => Some(c.epochs),
            BaselineSettings::LbptopSvm(_) | BaselineSettings::User(_) => None,
        }
    }

    /// Checks every range; the error names the field below `[methods.<name>]`.
    pub fn validate(&self) -> Result<(), crate::train_config::ConfigError> {
        let bad = |field: String, message: String| crate::train_config::ConfigError {
            field: format!("methods.{}.{field}", self.method().key()),
            message,
        };
        let net = |epochs: usize, batch: usize, lr: f64, dropout: f64| {
            if epochs == 0 {
                return Err(bad("epochs".into(), "epochs must be at least 1".into()));
            }
            if batch == 0 {
                return Err(bad(
                    "batch_size".into(),
                    "batch_size must be at least 1".into(),
                ));
            }
            if !(lr.is_finite() && lr > 0.0) {
                return Err(bad("lr".into(), format!("lr = {lr} must be positive")));
            }
            if !(0.0..1.0).contains(&dropout) {
                return Err(bad(
                    "dropout".into(),
                    format!("dropout = {dropout} must be in [0, 1)"),
                ));
            }
            Ok(())
        };
        match self {
            BaselineSettings::User(u) => u.validate().map_err(|(f, m)| bad(f, m)),
            BaselineSettings::Ststnet(c) => net(c.epochs, c.batch_size, c.lr, c.dropout),
            BaselineSettings::Offapexnet(c) => {
                net(c.epochs, c.batch_size, c.lr, c.dropout)?;
                if c.dense <= 0 {
                    return Err(bad(
                        "dense".into(),
                        format!("dense = {} must be positive", c.dense),
                    ));
                }
                Ok(())
            }
            BaselineSettings::LbptopSvm(c) => {
                if c.blocks.contains(&0) {
                    return Err(bad(
                        "blocks".into(),
                        format!("blocks {:?} must be at least 1 x 1", c.blocks),
                    ));
                }
                if c.radius.contains(&0) {
                    return Err(bad(
                        "radius".into(),
                        format!("radius {:?} must be at least 1 on every axis", c.radius),
                    ));
                }
                if c.neighbours != 8 {
                    return Err(bad(
                        "neighbours".into(),
                        format!(
                            "neighbours = {}: only 8 (59 uniform-pattern bins) is implemented",
                            c.neighbours
                        ),
                    ));
                }
                if !(c.c.is_finite() && c.c > 0.0) {
                    return Err(bad("c".into(), format!("c = {} must be positive", c.c)));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_mersiamc3d_has_a_prior_stage() {
        for m in Method::ALL {
            assert_eq!(m.key().parse::<Method>(), Ok(m.clone()));
            assert_eq!(
                serde_json::to_value(&m).unwrap(),
                serde_json::json!(m.key())
            );
            assert_eq!(m.has_prior(), m == Method::Mersiamc3d);
            assert!(!m.is_user());
        }
        assert!(Method::builtin("svm").unwrap_err().contains("lbptop_svm"));
        // Any other valid name is a method of the spec's own; what is not a name is an error.
        assert_eq!(
            "my_net".parse::<Method>(),
            Ok(Method::User("my_net".into()))
        );
        assert_eq!(
            serde_json::from_str::<Method>("\"my_net\"").unwrap(),
            Method::User("my_net".into())
        );
        assert!("1net".parse::<Method>().unwrap_err().contains("lbptop_svm"));
        assert!(!Method::User("x".into()).has_prior());
        assert_eq!(Method::Ststnet.inputs(), &[InputGroup::ApexFlow]);
        assert_eq!(InputGroup::Tim10.prep_flag(), "--tim10");
    }

    #[test]
    fn settings_tables_reject_unknown_fields_and_carry_their_method() {
        let c: MethodsConfig = toml::from_str("[ststnet]\nepochs = 5\n").unwrap();
        assert_eq!(c.ststnet.epochs, 5);
        assert_eq!(c.ststnet.lr, StstnetConfig::default().lr);
        let e = toml::from_str::<MethodsConfig>("[ststnet]\nepoch = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch"), "{e}");
        let s = c.settings(&Method::Ststnet).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["method"], "ststnet");
        assert_eq!(serde_json::from_value::<BaselineSettings>(v).unwrap(), s);
        assert_eq!(c.settings(&Method::Mersiamc3d), None);
        let mut bad = c.lbptop_svm.clone();
        bad.blocks = [0, 5];
        let e = BaselineSettings::LbptopSvm(bad).validate().unwrap_err();
        assert_eq!(e.field, "methods.lbptop_svm.blocks");
        for m in [Method::Ststnet, Method::Offapexnet, Method::LbptopSvm] {
            assert_eq!(
                MethodsConfig::default().settings(&m).unwrap().validate(),
                Ok(())
            );
        }
    }
}

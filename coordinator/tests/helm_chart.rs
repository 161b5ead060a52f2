//! Renders charts/mer with a real Helm engine (Helm v4's Go SDK, PyPI `helm-python-sdk`, driven by
//! scripts/helm_render.py) for the default values and for a GPU-heavy values file, validates every
//! rendered manifest against the Kubernetes OpenAPI schemas with `kubernetes-validate --strict`
//! (for the chart's minimum, 1.33, and the newest schema shipped), checks the dashboard's PromQL with
//! `promtool check rules`, and asserts the fields that matter (probes, ports, GPU settings, RBAC verbs).
//! Needs `scripts/bootstrap.sh` (it installs .venv with both Python tools and Debian's prometheus).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_bin(tool: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(tool);
    assert!(
        p.exists(),
        "{} is missing: run scripts/bootstrap.sh",
        p.display()
    );
    p
}

struct Rendered {
    _dir: tempfile::TempDir,
    manifests: Vec<(String, Value)>,
    files: Vec<PathBuf>,
    notes: String,
}

impl Rendered {
    fn kind(&self, kind: &str) -> Vec<&Value> {
        self.manifests
            .iter()
            .filter(|(_, m)| m["kind"] == kind)
            .map(|(_, m)| m)
            .collect()
    }
    fn one(&self, kind: &str) -> &Value {
        let v = self.kind(kind);
        assert_eq!(v.len(), 1, "expected one {kind}, got {}", v.len());
        v[0]
    }
}

fn render(values: &[&str], namespace: &str) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(root().join("scripts/helm_render.py"))
        .arg(root().join("charts/mer"))
        .arg(dir.path());
    for v in values {
        cmd.arg("--values").arg(root().join(v));
    }
    let out = cmd
        .args(["--release", "mer", "--namespace", namespace])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helm render failed: {err}");
    assert!(
        err.contains("Helm SDK v4"),
        "not rendered by the Helm engine: {err}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rendered.json")).unwrap())
            .unwrap();
    let mut manifests = Vec::new();
    let mut files = Vec::new();
    for e in json.as_array().unwrap() {
        manifests.push((
            e["template"].as_str().unwrap().to_string(),
            e["manifest"].clone(),
        ));
        files.push(
            dir.path()
                .join("manifests")
                .join(e["file"].as_str().unwrap()),
        );
    }
    let notes = std::fs::read_to_string(dir.path().join("NOTES.txt")).unwrap_or_default();
    Rendered {
        _dir: dir,
        manifests,
        files,
        notes,
    }
}

/// Runs kubernetes-validate --strict on every rendered file for `version`; returns its output.
/// CRDs that are not part of Kubernetes (ServiceMonitor) have no schema there: they are the only
/// warnings allowed, and the caller checks them field by field.
fn validate(r: &Rendered, version: &str) -> String {
    let out = Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "-k", version])
        .args(&r.files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate {version} failed:\n{text}"
    );
    let passed = text
        .lines()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
        .count();
    let crds = r.kind("ServiceMonitor").len();
    assert_eq!(
        passed,
        r.files.len() - crds,
        "every core manifest must pass:\n{text}"
    );
    for l in text
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
    {
        assert!(
            l.contains("Couldn't find schema for kind ServiceMonitor"),
            "unexpected finding: {l}"
        );
    }
    text
}

fn container(m: &Value) -> &Value {
    &m["spec"]["template"]["spec"]["containers"][0]
}

fn worker_template(r: &Rendered) -> Value {
    let cm = r
        .kind("ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "mer-worker-template")
        .expect("worker template");
    serde_json::from_str(cm["data"]["worker-template.json"].as_str().unwrap()).unwrap()
}

#[test]
fn default_values_render_and_validate() {
    let r = render(&[], "default");
    validate(&r, "1.33.0");
    validate(&r, "1.37.0");
    let kinds: Vec<&str> = r
        .manifests
        .iter()
        .map(|(_, m)| m["kind"].as_str().unwrap())
        .collect();
    for k in [
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Secret",
        "ConfigMap",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(
        r.kind("ServiceMonitor").is_empty(),
        "ServiceMonitor is opt-in"
    );
    assert_eq!(r.kind("ConfigMap").len(), 1, "dashboard is opt-in");

    let d = r.one("Deployment");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let c = container(d);
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        serde_json::json!({"path": "/healthz", "port": "http-metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        serde_json::json!({"path": "/readyz", "port": "http-metrics"})
    );
    let ports: Vec<(&str, i64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, vec![("grpc", 50051), ("http-metrics", 9464)]);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..5],
        &[
            "coordinator",
            "--listen",
            "0.0.0.0:50051",
            "--http-listen",
            "0.0.0.0:9464"
        ]
    );
    // The launcher's template is the mounted worker-template ConfigMap.
    let at = args
        .iter()
        .position(|a| *a == "--k8s-worker-template")
        .expect("--k8s-worker-template");
    assert_eq!(args[at + 1], "/etc/mer/worker-template.json");
    let mounts = c["volumeMounts"].as_array().unwrap();
    let m = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/mer")
        .expect("/etc/mer mount");
    let vol = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap();
    assert_eq!(vol["configMap"]["name"], "mer-worker-template");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/var/lib/mer"),
        "state volume"
    );
    let token = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MER_TOKEN")
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "mer-token", "key": "token"})
    );
    let claim = &d["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"];
    assert_eq!(claim, "mer-state");

    // The token is generated (40 characters) when none is given.
    let secret = r.one("Secret");
    let b64 = secret["data"]["token"].as_str().unwrap();
    assert_eq!(b64.len(), 56, "base64 of 40 random characters: {b64}");

    let svc = r.one("Service");
    let sp: Vec<(&str, i64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(sp, vec![("grpc", 50051), ("http-metrics", 9464)]);
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );

    // RBAC: exactly the launcher's verbs.
    let role = r.one("Role");
    let rules: Vec<(String, String, Vec<String>)> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| {
            let groups = rule["apiGroups"].as_array().unwrap().clone();
            let verbs: Vec<String> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(move |res| {
                    let verbs = verbs.clone();
                    groups.clone().into_iter().map(move |g| {
                        (
                            g.as_str().unwrap().to_string(),
                            res.as_str().unwrap().to_string(),
                            verbs.clone(),
                        )
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        vec![
            (
                "batch".into(),
                "jobs".into(),
                s(&["create", "get", "list", "watch", "patch", "delete"])
            ),
            ("".into(), "pods".into(), s(&["get", "list", "watch"])),
            (
                "".into(),
                "configmaps".into(),
                s(&["create", "get", "delete"])
            ),
        ]
    );
    assert_eq!(
        mer_coordinator::k8s::LAUNCHER_RBAC.len(),
        rules.len(),
        "chart Role and launcher disagree"
    );
    for (g, res, verbs) in mer_coordinator::k8s::LAUNCHER_RBAC {
        assert!(
            rules.contains(&(g.to_string(), res.to_string(), s(verbs))),
            "{g}/{res} {verbs:?} not in the Role"
        );
    }
    let rb = r.one("RoleBinding");
    assert_eq!(
        rb["subjects"][0]["name"],
        r.one("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        r.one("ServiceAccount")["metadata"]["name"]
    );

    // The worker template parses as the launcher's own type with the defaults.
    let t = worker_template(&r);
    let wt: mer_coordinator::k8s::WorkerTemplate = serde_json::from_value(t.clone()).unwrap();
    assert_eq!((wt.gpus, wt.slots_per_gpu, wt.max_parallelism), (1, 1, 68));
    assert_eq!(wt.coordinator_address, "http://mer.default.svc:50051");
    assert_eq!(wt.token_secret.name, "mer-token");
    assert!(
        r.notes
            .contains("mer submit --coordinator http://127.0.0.1:50051"),
        "{}",
        r.notes
    );
}

#[test]
fn gpu_heavy_values_render_and_validate() {
    let r = render(&["charts/mer/ci/gpu-values.yaml"], "ml");
    validate(&r, "1.33.0");
    validate(&r, "1.37.0");

    let d = r.one("Deployment");
    assert_eq!(
        container(d)["image"],
        "registry.example.org/mer/coordinator:0.1.0"
    );
    let pvc = r.one("PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["storageClassName"], "fast-ssd");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "200Gi");
    assert_eq!(
        r.one("Secret")["data"]["token"],
        "czNjcmV0LXRva2VuLWZvci10ZXN0cw=="
    );

    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        sm["spec"]["endpoints"][0],
        serde_json::json!({"port": "http-metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"})
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"][0], "ml");

    let dash = r
        .kind("ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "mer-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    let board: Value = serde_json::from_str(dash["data"]["mer.json"].as_str().unwrap()).unwrap();
    assert_eq!(board["uid"], "mer-experiments");

    let wt: mer_coordinator::k8s::WorkerTemplate =
        serde_json::from_value(worker_template(&r)).unwrap();
    assert_eq!((wt.gpus, wt.slots_per_gpu, wt.max_parallelism), (8, 2, 68));
    assert_eq!(wt.image, "registry.example.org/mer/worker-cuda:0.1.0-cu130");
    assert_eq!(wt.namespace, "ml");
    assert_eq!(wt.coordinator_address, "http://mer.ml.svc:50051");
    assert_eq!(
        wt.node_selector
            .get("nvidia.com/gpu.product")
            .map(String::as_str),
        Some("NVIDIA-H100-80GB-HBM3")
    );
    assert_eq!(wt.tolerations.len(), 1);
    assert_eq!(wt.tolerations[0].key.as_deref(), Some("nvidia.com/gpu"));

    // The Job the launcher makes from this template validates against the same schemas.
    let job = mer_coordinator::k8s::build_job(
        &wt,
        &mer_coordinator::k8s::JobRequest::new("exp-1234", "composite", 136),
        "uid-1",
    )
    .unwrap();
    let limits = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "8");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("job.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&job).unwrap()).unwrap();
    for v in ["1.33.0", "1.37.0"] {
        let out = Command::new(venv_bin("kubernetes-validate"))
            .args(["--strict", "-k", v])
            .arg(&f)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("passed for resource job/"),
            "launcher Job invalid for {v}:\n{text}"
        );
    }
}

/// Every PromQL expression of the dashboard parses (promtool check rules on a recording-rule file).
#[test]
fn dashboard_queries_are_valid_promql() {
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/mer/dashboards/mer.json")).unwrap(),
    )
    .unwrap();
    let mut rules = String::from("groups:\n  - name: mer-dashboard\n    rules:\n");
    let mut n = 0;
    for p in board["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$job", ".*");
            n += 1;
            rules.push_str(&format!(
                "      - record: mer:dashboard_{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    assert!(n >= 13, "{n} queries");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rules.yaml");
    std::fs::write(&f, rules).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&f)
        .output()
        .expect("promtool (Debian package prometheus): run scripts/bootstrap.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );
}

/// The chart's example spec is a valid `launcher = "kubernetes"` experiment for 68 parallel folds, and
/// the Job it yields (with the default chart template) validates.
#[test]
fn the_kubernetes_example_spec_parses() {
    let path = root().join("charts/mer/examples/composite_megc3_k8s.toml");
    let spec = mer_coordinator::spec::load_spec(&path).unwrap();
    assert_eq!(
        spec.launcher,
        mer_coordinator::spec::LauncherKind::Kubernetes
    );
    let k = spec.kubernetes.as_ref().unwrap();
    assert_eq!(
        (k.workers, k.gpus_per_worker, k.slots_per_device),
        (68, 1, 2)
    );
    let r = render(&[], "mer");
    let mut wt: mer_coordinator::k8s::WorkerTemplate =
        serde_json::from_value(worker_template(&r)).unwrap();
    wt.apply_spec(k);
    // 68 prior + 680 target tasks, 2 slots per pod: capped at 68 pods.
    let job = mer_coordinator::k8s::build_job(
        &wt,
        &mer_coordinator::k8s::JobRequest::new("composite-1", &spec.name, 748),
        "uid",
    )
    .unwrap();
    assert_eq!(job.spec.as_ref().unwrap().parallelism, Some(68));
}

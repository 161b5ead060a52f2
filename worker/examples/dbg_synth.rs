fn main() {
    let args: Vec<String> = std::env::args().collect();
    let preset: mer_worker::synth::Preset = args[1].parse().unwrap();
    let out = std::path::PathBuf::from(&args[2]);
    let _ = std::fs::remove_dir_all(&out);
    let t = std::time::Instant::now();
    let s = mer_worker::synth::generate(preset, 7, &out).unwrap();
    println!("synth {:.1}s", t.elapsed().as_secs_f64());
    let mut o = mer_worker::prep::PrepOptions::from_synth(&s, out.join("p.safetensors"));
    o.composite = args.get(3).map(|a| a == "composite").unwrap_or(false);
    let r = mer_worker::prep::prepare(&o).unwrap();
    print!("{}", r.to_text());
}

use std::time::Instant;
use juris_policy::*;
fn main() {
    let p = CompiledPolicy::empty();
    let now = jiff::Timestamp::from_second(1_717_243_200).unwrap();
    let names: Vec<Vec<u8>> = (0..4096).map(|i| name_to_wire(&format!("www.abcdefg{i}.com")).unwrap()).collect();
    let it: Country = "IT".parse().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0;
        for r in 0..1000 { for q in &names { if p.check_name(std::hint::black_box(q), Some(it), now).is_block() { n += 1 } } let _ = r; }
        println!("empty policy: {:.1} ns/check ({n})", t.elapsed().as_nanos() as f64 / 4096000.0);
    }
}

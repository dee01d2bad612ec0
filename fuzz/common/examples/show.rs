//! `show TARGET FILE`: prints a fuzz input as the value it decodes to (for crash triage).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: show TARGET FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&file).expect("reading the input");
    use vmsi_fuzz_common::*;
    let shown = match target.as_str() {
        "trap" => format!("{:#?}", decode::<trap::Input>(&data)),
        "kernel_answers" => format!("{:#?}", decode::<kernel_answers::Input>(&data)),
        "sim_faults" => format!("{:#?}", decode::<sim_faults::Input>(&data)),
        "kernel_verbs" => format!("{:#?}", decode::<kernel_verbs::Input>(&data)),
        "firmware" => format!(
            "parser byte {:?}, payload {:02x?}",
            data.first(),
            data.get(1..)
        ),
        other => format!("no fuzz target {other}"),
    };
    println!("{shown}");
}

fn main() {
    for f in std::env::args().skip(1) {
        match keyward::policy::load_file(std::path::Path::new(&f)) {
            Ok(p) => {
                println!("{f}: ok ({} roles)", p.model.roles.len());
                for w in &p.warnings {
                    println!("{w:?}");
                }
                print!("{}", p.formatted());
            }
            Err(keyward::policy::LoadError::Invalid(r)) => print!("{}", r.render()),
            Err(e) => println!("{e}"),
        }
    }
}

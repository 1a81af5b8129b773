pub fn run(_a: &[String]) -> crate::util::Result<()> { Ok(()) } pub fn serve(_a: &[String]) -> crate::util::Result<()> { Ok(()) } pub fn mkfile(_a: &[String]) -> crate::util::Result<()> { Ok(()) }

use std::time::Duration;

#[test]
fn smoke() {
    let rt = ringloom::Runtime::builder().workers(2).build().unwrap();
    let v = rt.block_on(async {
        ringloom::op::Nop::submit().await.unwrap();
        ringloom::time::sleep(Duration::from_millis(10)).await;
        let h = ringloom::spawn(async {
            ringloom::op::Nop::submit().await.unwrap();
            ringloom::time::sleep(Duration::from_millis(10)).await;
            ringloom::op::Timeout::submit(Duration::from_millis(5))
                .await
                .unwrap();
            7
        });
        h.await.unwrap()
    });
    assert_eq!(v, 7);
    println!("{}", rt.stats());
}

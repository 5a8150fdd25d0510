use galantis_store::migrate;
use galantis_testkit::TestApp;

#[tokio::test]
async fn migrate_all_is_idempotent_and_readiness_tracks_tenant_versions() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_tenant(&format!("mig-api-{i}")).await;
    }
    let first = migrate::migrate_all(app.db(), 2, 2).await.unwrap();
    assert_eq!(first.tenants_total, 5);
    assert_eq!(
        first.tenants_upgraded, 0,
        "tenants are created at the latest version"
    );
    let second = migrate::migrate_all(app.db(), 2, 2).await.unwrap();
    assert_eq!(second.control_applied, 0);
    assert_eq!(second.tenants_upgraded, 0);
    assert!(migrate::migrations_current(app.db()).await.unwrap());
}

use galantis_core::SecretName;
use galantis_store::control::keyring;
use galantis_store::crypto::MasterKey;
use galantis_store::tenant::secrets;
use galantis_testkit::TestApp;
use secrecy::{ExposeSecret, SecretString};

const PLAINTEXT: &str = "shpat_0123456789abcdef-very-secret";

#[tokio::test]
async fn a_stored_secret_is_ciphertext_at_rest_and_round_trips() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("sec-a").await;
    let other = app.create_tenant("sec-b").await;
    let store = &app.state.secrets;
    store
        .put(
            t.id,
            SecretName::ShopifyAccessToken,
            &SecretString::from(PLAINTEXT),
        )
        .await
        .unwrap();

    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let raw = secrets::raw_ciphertext(&mut tx, SecretName::ShopifyAccessToken)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        !raw.windows(PLAINTEXT.len())
            .any(|w| w == PLAINTEXT.as_bytes())
    );
    assert!(!raw.windows(10).any(|w| w == &PLAINTEXT.as_bytes()[6..16]));

    let back = store
        .get(t.id, SecretName::ShopifyAccessToken)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.expose_secret(), PLAINTEXT);
    assert!(
        store
            .get(other.id, SecretName::ShopifyAccessToken)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(t.id, SecretName::MetaAccessToken)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delete(t.id, SecretName::ShopifyAccessToken)
            .await
            .unwrap()
    );
    assert!(
        store
            .get(t.id, SecretName::ShopifyAccessToken)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn secrets_survive_master_key_rotation_and_the_old_key_stops_working() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("sec-rot").await;
    app.state
        .secrets
        .put(
            t.id,
            SecretName::MetaAccessToken,
            &SecretString::from(PLAINTEXT),
        )
        .await
        .unwrap();
    let old = app.master_key().clone();
    let new = MasterKey::generate().unwrap();
    assert_eq!(keyring::rotate(app.db(), &old, &new).await.unwrap(), 1);

    let store =
        galantis_store::SecretStore::new(app.db().clone(), std::sync::Arc::new(new.clone()));
    let back = store
        .get(t.id, SecretName::MetaAccessToken)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.expose_secret(), PLAINTEXT);
    keyring::verify_or_init(app.db(), &new).await.unwrap();
    assert!(keyring::verify_or_init(app.db(), &old).await.is_err());
    // Rotating with the wrong "old" key changes nothing.
    assert!(
        keyring::rotate(app.db(), &old, &MasterKey::generate().unwrap())
            .await
            .is_err()
    );
    keyring::verify_or_init(app.db(), &new).await.unwrap();
}

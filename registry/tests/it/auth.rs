use rbuild_registry::{
    Client, ClientOptions, Credential, CredentialStore, DockerConfig, MemoryBlobs, PullOptions,
    PushImage, PushOptions, Reference, RegistryError, Secret,
};
use rbuild_test_support::{BusyboxLayout, Format, PASSWORD, Registry, USER};

use crate::test_options;

fn creds(registry: &Registry, password: &str) -> CredentialStore {
    CredentialStore::anonymous().with_credential(
        &registry.host(),
        Credential::Basic {
            username: USER.into(),
            password: Secret::new(password),
        },
    )
}

fn tls_client(registry: &Registry, credentials: CredentialStore) -> Client {
    Client::new(ClientOptions {
        credentials,
        ca_files: vec![registry.ca_pem()],
        ..test_options()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_over_tls_pull_and_push() {
    let registry = Registry::start_with_auth();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let reference = Reference::parse(&format!("{}/busybox", registry.host())).unwrap();

    let c = tls_client(&registry, creds(&registry, PASSWORD));
    c.check_login(&registry.host()).await.unwrap();
    let blobs = MemoryBlobs::new();
    let image = c
        .pull(&reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(blobs.len(), 3);
    let dest = Reference::parse(&format!("{}/pushed:1", registry.host())).unwrap();
    let pushed = c
        .push(
            &dest,
            &PushImage::from_manifest(&image.manifest).unwrap(),
            &blobs,
            &PushOptions {
                mount_from: Some("busybox".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(pushed.mounted.len(), 2, "{pushed:?}");

    // Anonymous and wrong-password clients are refused, and the password never shows.
    let anon = tls_client(&registry, CredentialStore::anonymous());
    let err = anon
        .pull(&reference, &MemoryBlobs::new(), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&registry.host()), "{err}");
    let wrong = tls_client(&registry, creds(&registry, "not-the-password"));
    let err = wrong.check_login(&registry.host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let shown = format!(
        "{err} {err:?} {:?} {:?}",
        wrong.options(),
        creds(&registry, PASSWORD)
    );
    assert!(
        !shown.contains(PASSWORD) && !shown.contains("not-the-password"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_needs_the_ca_and_certs_d_provides_it() {
    let registry = Registry::start_with_auth();
    // Without the CA: a TLS error, not a silent fall back to plain HTTP.
    let no_ca = Client::new(ClientOptions {
        credentials: creds(&registry, PASSWORD),
        ..test_options()
    });
    let err = no_ca.check_login(&registry.host()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Http { .. }), "{err:?}");
    assert!(err.to_string().contains("https://127.0.0.1"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join(registry.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(registry.ca_pem(), host_dir.join("ca.crt")).unwrap();
    let with_dir = Client::new(ClientOptions {
        credentials: creds(&registry, PASSWORD),
        certs_dirs: vec![dir.path().to_path_buf()],
        ..test_options()
    });
    with_dir.check_login(&registry.host()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_docker_config_and_auth_file() {
    let registry = Registry::start_with_auth();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.json");
    let mut cfg = DockerConfig::load_or_default(&config_path).unwrap();
    cfg.set_basic(&registry.host(), USER, &Secret::new(PASSWORD));
    std::fs::write(&config_path, cfg.to_json()).unwrap();

    let from_docker = CredentialStore::with_files(None, Some(config_path.clone()));
    tls_client(&registry, from_docker)
        .check_login(&registry.host())
        .await
        .unwrap();
    let from_auth_file = CredentialStore::with_files(Some(config_path.clone()), None);
    tls_client(&registry, from_auth_file)
        .check_login(&registry.host())
        .await
        .unwrap();

    // After removing the entry the registry refuses.
    let mut cfg = DockerConfig::load_or_default(&config_path).unwrap();
    assert!(cfg.remove(&registry.host()));
    std::fs::write(&config_path, cfg.to_json()).unwrap();
    let err = tls_client(
        &registry,
        CredentialStore::with_files(None, Some(config_path)),
    )
    .check_login(&registry.host())
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}

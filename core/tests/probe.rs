//! Registering a model waits for its probe: a probe that failed before the
//! registering request read the model back is still a failure (a fast
//! worker once turned that into a 202 with a failed model).

use std::time::Duration;

use neuralign_core::notify::Notifications;
use neuralign_core::resources::NewBuiltinModel;
use neuralign_core::service::ProbeOutcome;
use neuralign_core::{auth, ErrorCode, Service, ServiceConfig};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrations = "../migrations")]
async fn a_probe_that_already_failed_fails_the_registration(pool: PgPool) {
    let svc = Service::new(pool.clone(), ServiceConfig::default(), Notifications::new());
    auth::ensure_admin_key(&pool, Some("nl_test_admin"), 4)
        .await
        .unwrap();
    let admin = svc.authenticate(Some("nl_test_admin")).await.unwrap();
    let (_, key) = svc.create_lab(&admin, "probe", None).await.unwrap();
    let caller = svc.authenticate(Some(&key)).await.unwrap();
    let spec = json!({"architecture": {"type": "mlp", "input": 4, "hidden": [3]}, "seed": 1});
    let model = svc
        .register_builtin(
            &caller,
            NewBuiltinModel {
                name: "m".into(),
                spec,
                input: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(model.state, "probing");
    // The worker is faster than the request: the probe fails first.
    svc.finish_probe(model.id, ProbeOutcome::Failed("input: rejected".into()))
        .await
        .unwrap();
    let read_back = svc.get_model(&caller, model.id).await.unwrap();
    assert_eq!(read_back.state, "failed");
    let err = svc
        .await_probe(&caller, read_back, Duration::from_secs(5))
        .await
        .expect_err("a failed probe fails the registration");
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.client_message().contains("input: rejected"), "{err}");
    assert!(
        svc.get_model(&caller, model.id).await.is_err(),
        "the failed version is removed"
    );
}

//! `POST /reload`: a bad configuration refused, a good one put in force.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn reload_refuses_a_bad_configuration_and_keeps_the_one_in_force() {
    let s = setup("").await;
    let c = client(&s.socket);
    let config_path = s.sealpost.config_path();
    let explain = "/policy/explain?from=x%40peer.test&to=y%40new.example";
    let before = get(&c, explain).await;
    assert_eq!(before["resolution"]["tenant"], Value::Null, "{before}");

    // A bad file: 422 with every error, the old configuration stays.
    std::fs::write(
        &config_path,
        "[[domains]]\nname = \"new.example\"\ntenant = \"acme\"\ninbound.default = { level = \"sometimes\" }\n",
    )
    .expect("write");
    let answer = call(&c, Method::POST, "/reload", None).await;
    assert_eq!(answer.status, 422, "{}", answer.error_text());
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.contains(":4:") && e.contains("sometimes"))),
        "{body}"
    );
    assert_eq!(get(&c, explain).await, before);
    let metrics = call(&c, Method::GET, "/metrics", None).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("sealpost_config_generation 1\n"));

    // A good one: 200 with the report, the new domain is in force.
    std::fs::write(
        &config_path,
        s.peers.config(
            s.sealpost.smtp.port(),
            &s.socket,
            "",
            "\n[[domains]]\nname = \"new.example\"\ntenant = \"newco\"\n",
        ),
    )
    .expect("write");
    let report = post(&c, "/reload", "").await;
    assert_eq!(report["generation"], 2, "{report}");
    assert_eq!(report["managed_domains"], 3);
    let after = get(&c, explain).await;
    assert_eq!(after["resolution"]["tenant"], "newco", "{after}");
    let tenants = get(&c, "/tenants").await;
    assert!(tenants["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .any(|t| t["name"] == "newco" && t["domains"][0]["name"] == "new.example"));
}

//! List (newest first, paged, by creation time) and search by metadata.

use crate::helpers::*;

#[tokio::test]
async fn list_pages_newest_first_from_a_creation_time() {
    let provider = spawn(instant()).await;
    let before = provider.get("/v1/payment_intents").await;
    assert_eq!(before.body["object"], "list");
    assert_eq!(before.body["url"], "/v1/payment_intents");
    assert_eq!(before.body["data"].as_array().unwrap().len(), 0);

    let mut ids = Vec::new();
    for amount in 1..=5 {
        ids.push(provider.authorized(amount).await);
    }
    let page = provider.get("/v1/payment_intents?limit=2").await;
    assert_eq!(page.status, 200, "{}", page.raw);
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], ids[4].as_str());
    assert_eq!(data[1]["id"], ids[3].as_str());
    assert_eq!(page.body["has_more"], true);

    let next = provider
        .get(&format!(
            "/v1/payment_intents?limit=2&starting_after={}",
            ids[3]
        ))
        .await;
    let data = next.body["data"].as_array().unwrap();
    assert_eq!(data[0]["id"], ids[2].as_str());
    assert_eq!(data[1]["id"], ids[1].as_str());
    assert_eq!(next.body["has_more"], true);

    let last = provider
        .get(&format!(
            "/v1/payment_intents?limit=2&starting_after={}&expand[]=data.latest_charge",
            ids[1]
        ))
        .await;
    let data = last.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], ids[0].as_str());
    assert_eq!(data[0]["latest_charge"]["object"], "charge");
    assert_eq!(last.body["has_more"], false);

    let created = data[0]["created"].as_u64().unwrap();
    let all = provider
        .get(&format!(
            "/v1/payment_intents?created[gte]={created}&limit=100"
        ))
        .await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 5);
    let none = provider
        .get(&format!(
            "/v1/payment_intents?created[gte]={}",
            created + 3600
        ))
        .await;
    assert_eq!(none.body["data"].as_array().unwrap().len(), 0);
    assert_eq!(none.body["has_more"], false);

    let bad = provider.get("/v1/payment_intents?limit=101").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "limit");
}

#[tokio::test]
async fn search_finds_an_attempt_by_its_metadata() {
    let provider = spawn(instant()).await;
    let attempt = new_key();
    let created = provider.create(&new_key(), 250, "tok_ok", &attempt).await;
    provider.authorized(250).await;

    let found = provider
        .get(&format!(
            "/v1/payment_intents/search?query=metadata['attempt_id']:'{attempt}'&expand[]=data.latest_charge"
        ))
        .await;
    assert_eq!(found.status, 200, "{}", found.raw);
    assert_eq!(found.body["object"], "search_result");
    assert_eq!(found.body["url"], "/v1/payment_intents/search");
    assert_eq!(found.body["has_more"], false);
    assert!(found.body["next_page"].is_null());
    let data = found.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], created.body["id"]);
    assert_eq!(data[0]["latest_charge"]["object"], "charge");

    let nothing = provider
        .get(&format!(
            "/v1/payment_intents/search?query=metadata['attempt_id']:'{}'",
            new_key()
        ))
        .await;
    assert_eq!(nothing.body["data"].as_array().unwrap().len(), 0);

    let other = provider
        .get("/v1/payment_intents/search?query=status:'succeeded'")
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(
        other.error(),
        ("invalid_request_error", "parameter_invalid")
    );
}

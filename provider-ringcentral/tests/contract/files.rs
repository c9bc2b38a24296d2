//! Files the user passes as URLs, against the emulator: Engage fetches them (the contract
//! suite sends bytes, since the provider takes both).

use handover_core::{Attachment, UserInput};
use handover_testkit::{EmulatorHarness, Harness, SampleFile};

use crate::harness::RingCentralHarness;

#[tokio::test]
async fn a_file_url_is_fetched_by_engage_and_reaches_the_agent_intact() {
    let harness = <RingCentralHarness as EmulatorHarness>::setup().await;
    let session = Harness::provider(&harness).start(Harness::request(&harness)).await.expect("start");
    Harness::agent_joins(&harness, "Ann").await;
    let invoice = SampleFile::invoice();
    let url = Harness::host_file(&harness, &invoice).expect("the emulator hosts files");
    let link = Attachment::url(invoice.name.clone(), invoice.media_type.clone(), url).with_caption("The scan");
    session.send(UserInput::attachment("link-1", link)).await.expect("the URL is sent");
    assert_eq!(harness.customer_files(1).await, [invoice.received()]);
    let texts = harness.customer_texts(1).await;
    assert_eq!(texts.last().map(String::as_str), Some("The scan"), "the caption, imported with the file");
}

//! Two timely processes on loopback: data crosses processes through bincode and the result is
//! the same as on one worker.

use crate::support::*;

#[test]
fn two_processes_match_the_reference() {
    let dir = Scratch::new("procs");
    let stream = seeded_stream(11, 5, 2_000);
    let inputs = write_partitions(&dir, &stream);
    let pipeline = dir.path("pipeline.toml");
    std::fs::write(&pipeline, file_pipeline(&inputs, &dir, 4)).unwrap();
    let hostfile = dir.path("hosts");
    tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
    let statuses = fixture::run_two_processes(&pipeline, &hostfile);
    for (i, s) in statuses.iter().enumerate() {
        assert!(
            s.is_some_and(|s| s.success()),
            "process {i} did not finish cleanly: {s:?}"
        );
    }
    let (config, _) =
        tidemark::config::parse(&std::fs::read_to_string(&pipeline).unwrap()).unwrap();
    let expected = canonical(&reference(&stream));
    let observed = read_envelopes(&dir);
    let report = tidemark::tools::verify::verify(&expected, &observed, &config.event);
    assert!(report.ok(), "{report}");
    assert_partitions_sorted(&observed, 4);
}

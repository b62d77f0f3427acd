//! Arbitrary bytes, split at arbitrary places, through the SSE parser and the
//! interpretation of chat completion and Responses API events: no panic, and the split
//! never matters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnbench::client::chunk::StreamState;
use turnbench::client::sse::{parse_all, Parser};
use turnbench::client::Measured;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the piece size, the rest is the stream.
    let Some((&step, body)) = data.split_first() else { return };
    let step = usize::from(step % 17) + 1;
    let Ok(whole) = parse_all(body) else { return };
    let mut parser = Parser::new();
    let mut pieces = Vec::new();
    for chunk in body.chunks(step) {
        parser.feed(chunk, &mut |e| pieces.push(e)).expect("same input, same limit");
    }
    assert_eq!(pieces, whole);

    let mut state = StreamState::default();
    let mut m = Measured::default();
    for (t, ev) in whole.iter().enumerate() {
        if state.on_event(ev, t as u64, &mut m).is_err() || state.done {
            break;
        }
    }
    let _ = state.finish(&mut m);

    let mut state = turnbench::client::responses::StreamState::default();
    let mut m = Measured::default();
    for (t, ev) in whole.iter().enumerate() {
        if state.on_event(ev, t as u64, &mut m).is_err() || state.done {
            break;
        }
    }
    let _ = state.finish(&mut m);
});

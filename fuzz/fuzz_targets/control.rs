//! One control-protocol request line, handled as `troupe::control`'s connection loop does:
//! the length cap, `serde_json::from_slice::<Request>`, `Request::validate`, and the response
//! serialised back. For a valid request, also what the handler then derives from it without a
//! running engine: the wait's `Duration`, a degrade's typed parameters, and the wire round trip.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use troupe::control::MAX_LINE;
use troupe_spec::control::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LINE {
        return;
    }
    let response = match serde_json::from_slice::<Request>(data) {
        Ok(req) => match req.validate() {
            Ok(()) => {
                accepted(&req);
                Response::ok()
            }
            Err(e) => Response::error(format!("bad request: {e}")),
        },
        Err(e) => Response::error(format!("bad request: {e}")),
    };
    serde_json::to_string(&response).expect("response serialises");
});

fn accepted(req: &Request) {
    let _ = req.op();
    if let Request::Wait { timeout_ms, .. } = req {
        let _ = Duration::from_millis(*timeout_ms);
    }
    if let Request::Fault { fault } = req {
        let _ = fault.kind();
        if let Some(params) = fault.degrade_params() {
            let d = params.expect("a validated degrade has valid parameters");
            let _ = (d.delay(), d.jitter(), d.loss().fraction(), d.to_string());
            if let Some(rate) = d.rate() {
                let _ = (rate.bits_per_second(), rate.bytes_per_second(), rate.to_string());
            }
        }
    }
    // What a client sends must be what the supervisor accepts.
    let line = serde_json::to_string(req).expect("request serialises");
    let back: Request = serde_json::from_str(&line).expect("a serialised request parses");
    back.validate().expect("a serialised valid request is valid");
}

//! Target 1: the frame decoder and every message decoder. Never a panic;
//! a length past the limit is refused before any body is looked at; and
//! whatever decodes, re-encodes to a value that decodes equal.

use rscq::proto::{
    Call, Hello, Incoming, PureOp, PureReply, Request, Response, UdpEvent, UdpOp, Welcome, frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::driver::Target;
use crate::mutate::{Dictionary, decode_calls, encode_calls, mutate_bytes, mutate_calls};
use crate::rng::Rng;

pub struct Frames {
    seeds: Vec<Request>,
    dict: Dictionary,
}

impl Frames {
    pub fn new() -> Self {
        Self {
            seeds: crate::seeds::every_request(),
            dict: Dictionary::new(std::path::Path::new("/nonexistent/canary")),
        }
    }
}

/// Decodes `body` as `T`; when it decodes, checks the round trip.
/// Returns the bit for the outcome signature.
fn round_trip<T>(body: &[u8], bit: u32) -> Result<u64, String>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = frame::decode::<T>(body) else {
        return Ok(0);
    };
    let bytes = frame::encode(&value);
    let again = frame::decode_frame::<T>(&bytes).map_err(|e| {
        format!(
            "{} decoded from a frame but its encoding does not: {e}",
            std::any::type_name::<T>()
        )
    })?;
    if again != value {
        return Err(format!(
            "{} changed across encode/decode: {value:?} became {again:?}",
            std::any::type_name::<T>()
        ));
    }
    Ok(1 << bit)
}

impl Target for Frames {
    fn name(&self) -> &'static str {
        "frames"
    }

    fn mutate(&mut self, rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut calls = decode_calls(input);
        if !calls.is_empty() && rng.one_in(3) {
            mutate_calls(rng, &mut calls, &self.seeds, &self.dict);
            return encode_calls(&calls);
        }
        mutate_bytes(rng, input, corpus)
    }

    fn run(&mut self, input: &[u8]) -> Result<u64, String> {
        let mut outcome = 0u64;
        let mut rest = input;
        loop {
            let checked = frame::check(rest);
            if rest.len() >= frame::HEADER {
                let header: [u8; frame::HEADER] =
                    rest[..frame::HEADER].try_into().unwrap_or([0; 4]);
                let announced = frame::body_len(header);
                let refused =
                    matches!(checked, Err(frame::FrameError::TooLarge(n)) if n == announced);
                if (announced > frame::MAX_FRAME) != refused {
                    return Err(format!(
                        "a header of {announced} bytes gave {checked:?} (limit {})",
                        frame::MAX_FRAME
                    ));
                }
            }
            let range = match checked {
                Ok(Some(range)) => range,
                Ok(None) => {
                    if frame::decode_frame::<Request>(rest).is_ok() {
                        return Err("a partial frame decoded as a whole one".to_owned());
                    }
                    return Ok(outcome ^ (1 << 62));
                }
                Err(_) => return Ok(outcome ^ (1 << 63)),
            };
            if range.start != frame::HEADER || range.end > rest.len() {
                return Err(format!("check gave {range:?} for {} bytes", rest.len()));
            }
            let body = &rest[range.clone()];
            let mut kinds = 0u64;
            kinds |= round_trip::<Call>(body, 0)?;
            kinds |= round_trip::<Request>(body, 1)?;
            kinds |= round_trip::<Response>(body, 2)?;
            kinds |= round_trip::<Hello>(body, 3)?;
            kinds |= round_trip::<Welcome>(body, 4)?;
            kinds |= round_trip::<Incoming>(body, 5)?;
            kinds |= round_trip::<UdpOp>(body, 6)?;
            kinds |= round_trip::<UdpEvent>(body, 7)?;
            kinds |= round_trip::<PureOp>(body, 8)?;
            kinds |= round_trip::<PureReply>(body, 9)?;
            if let Ok(call) = frame::decode::<Call>(body) {
                kinds ^=
                    crate::driver::hash(crate::seeds::variant_name(&call.request).as_bytes()) << 10;
            }
            outcome |= kinds;
            rest = &rest[range.end..];
            if rest.is_empty() {
                return Ok(outcome);
            }
        }
    }
}

//! Synthetic events in the canonical shape, for the generator source, the demo, the load
//! generator and tests: one writer, so every tool sends what the generator reads.

/// Lowercase hex digits, for writing ids.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes one synthetic event into `out` (cleared first): a 32-hex-digit id, the time, the
/// region, a service and level, and a message padded to about `payload_bytes`.
pub fn generate_event(
    out: &mut Vec<u8>,
    id: u128,
    time: u64,
    region: &str,
    service: u32,
    payload_bytes: usize,
) {
    out.clear();
    out.extend_from_slice(b"{\"eventId\":\"");
    for i in (0..32).rev() {
        out.push(HEX[((id >> (i * 4)) & 0xf) as usize]);
    }
    out.extend_from_slice(b"\",\"timestamp\":");
    let mut digits = [0u8; 20];
    let mut n = time;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b",\"region\":\"");
    out.extend_from_slice(region.as_bytes());
    out.extend_from_slice(b"\",\"service\":\"svc-");
    out.push(b'0' + (service / 10 % 10) as u8);
    out.push(b'0' + (service % 10) as u8);
    out.extend_from_slice(b"\",\"level\":\"info\",\"message\":\"");
    let close = b"\"}";
    let pad = payload_bytes.saturating_sub(out.len() + close.len()).max(1);
    let filler: &[u8] = b"request served in time; upstream healthy; cache warm; ";
    let mut left = pad;
    while left > 0 {
        let take = left.min(filler.len());
        out.extend_from_slice(&filler[..take]);
        left -= take;
    }
    out.extend_from_slice(close);
}

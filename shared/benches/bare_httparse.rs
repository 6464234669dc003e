//! The baseline the decoder is measured against, shared by the criterion
//! benchmark and the callgrind example: bare httparse doing the least any
//! framing must (parse each head, read `Content-Length`, skip the body).

/// Frames every request in `buf`; returns how many there were.
pub fn bare_httparse(buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while pos < buf.len() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = req.parse(&buf[pos..]) else { break };
        let len = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        pos += n + len;
        count += 1;
    }
    count
}

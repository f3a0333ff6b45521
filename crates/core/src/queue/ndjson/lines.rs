//! The NDJSON input one line at a time: read with a cap (a huge line is measured, not kept),
//! then parsed into a job, skipped when blank, or refused with a reason.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::domain::Job;
use crate::domain::job::{JobError, MAX_JOB_BYTES};

/// One line as a job: `Ok(None)` for a blank line, `Err(reason)` for a bad one.
pub(super) fn parse_line(buf: &[u8], line_len: usize) -> Result<Option<Job>, String> {
    if line_len > MAX_JOB_BYTES {
        return Err(JobError::TooLarge(line_len).to_string());
    }
    let line = buf.strip_suffix(b"\r").unwrap_or(buf);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Job::from_json(line).map(Some).map_err(|e| e.to_string())
}

/// Reads one line into `buf` (without its `\n`), keeping at most `cap + 1` bytes of it so a
/// huge line cannot exhaust memory. Returns the line's full length, or `None` at the end.
pub(super) async fn read_line_capped<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut started = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(started.then_some(total));
        }
        started = true;
        let newline = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        let room = (cap + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        total += part.len();
        let consumed = part.len() + usize::from(newline.is_some());
        input.consume(consumed);
        if newline.is_some() {
            return Ok(Some(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<(usize, Vec<u8>)> {
        // A tiny buffer, so lines span several reads.
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(len) = read_line_capped(&mut reader, &mut buf, cap).await.unwrap() {
            out.push((len, buf.clone()));
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_long_ones_capped_but_measured() {
        let out = lines(b"ab\n\ncdefghijkl\nlast", 5).await;
        assert_eq!(
            out,
            vec![
                (2, b"ab".to_vec()),
                (0, vec![]),
                (10, b"cdefgh".to_vec()),
                (4, b"last".to_vec()),
            ]
        );
        assert!(lines(b"", 5).await.is_empty());
        assert_eq!(lines(b"x\n", 5).await, vec![(1, b"x".to_vec())]);
    }

    #[test]
    fn blank_lines_are_skipped_and_bad_ones_explained() {
        assert!(matches!(parse_line(b"  \r", 3), Ok(None)));
        let err = parse_line(b"{", 1).unwrap_err();
        assert!(err.contains("not a valid job"), "{err}");
        let err = parse_line(b"", MAX_JOB_BYTES + 10).unwrap_err();
        assert!(err.contains(&format!("{}", MAX_JOB_BYTES + 10)), "{err}");
    }
}

/// Property tests of the NDJSON reader: any bytes, in any chunking, give lines or clear
/// rejections, never a panic, and no line buffer past the cap.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Reads every line of `input` (delivered `chunk` bytes at a time) like `publish_ndjson`.
    fn read_all(input: &[u8], chunk: usize) -> Vec<Result<Option<Job>, String>> {
        let reader = tokio::io::BufReader::with_capacity(chunk.max(1), input);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let mut reader = reader;
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while let Some(len) = read_line_capped(&mut reader, &mut buf, MAX_JOB_BYTES)
                .await
                .expect("reading a slice cannot fail")
            {
                assert!(
                    buf.len() <= MAX_JOB_BYTES + 1,
                    "buffer grew to {}",
                    buf.len()
                );
                out.push(parse_line(&buf, len));
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_give_lines_or_rejections(
            input in proptest::collection::vec(any::<u8>(), 0..4096),
            chunk in 1usize..64,
        ) {
            let lines = read_all(&input, chunk);
            let newlines = input.iter().filter(|b| **b == b'\n').count();
            prop_assert!(lines.len() == newlines || lines.len() == newlines + 1);
            for line in lines {
                if let Err(reason) = line {
                    prop_assert!(!reason.is_empty());
                }
            }
        }

        #[test]
        fn an_overlong_line_is_rejected_and_the_next_one_still_read(
            extra in 1usize..20_000,
            chunk in 1usize..8192,
        ) {
            let mut input = vec![b'x'; MAX_JOB_BYTES + extra];
            input.extend_from_slice(b"\n\n{}\n");
            let lines = read_all(&input, chunk);
            prop_assert_eq!(lines.len(), 3);
            prop_assert!(lines[0].as_ref().unwrap_err().contains("at most"));
            prop_assert!(matches!(lines[1], Ok(None)));
            prop_assert!(lines[2].is_err());
        }
    }
}

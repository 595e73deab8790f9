//! The one source transformation besides the precision line: loops marked `// unroll` are
//! written out, iteration by iteration, before the module is compiled.
//!
//! The kernels keep their register tiles in small arrays indexed by loops of constant trip
//! count (`for (var j = 0u; j < MAX_NV; j++)` with `if (j < nv)` guards inside). A compiler
//! that unrolls such loops turns every index into a constant and the arrays into registers.
//! Under wgpu's loop bounding ([`super::ShaderChecks::checked`]), though, every loop carries a
//! runtime counter that breaks it after 2^64 iterations, and Mesa then no longer unrolls it:
//! the arrays move to memory and the GEMMs run 5x slower on lavapipe (BENCHMARKS.md). Unrolled
//! here, the loops are gone before naga sees them, checked or not, and the guards fold away.
//!
//! A marked loop must read
//!
//! ```text
//! // unroll
//! for (var NAME = 0u; NAME < BOUND; NAME++) {
//!     BODY
//! }
//! ```
//!
//! where `BOUND` is a literal, a `const` of the source, or one of them divided or multiplied by
//! another; `BODY` may not `break` or `continue`. Each iteration becomes `{ BODY }` with `NAME`
//! replaced by the literal (`0u`, `1u`, ...). Marked loops may nest.

use std::collections::HashMap;

use crate::error::{Error, Result};

const MARK: &str = "// unroll";

fn error(what: impl Into<String>) -> Error {
    Error::Gpu(format!("shader unrolling: {}", what.into()))
}

/// `src` with every `// unroll` loop written out.
pub fn expand(src: &str) -> Result<String> {
    let consts = constants(src);
    let mut out = src.to_string();
    // Outermost first: the copies of an inner marked loop are expanded by later rounds.
    while let Some(at) = find_mark(&out) {
        out = expand_at(&out, at, &consts)?;
    }
    Ok(out)
}

/// The byte offset of the first marker that stands alone on its line.
fn find_mark(src: &str) -> Option<usize> {
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        if line.trim() == MARK {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// `const NAME: u32 = 12u;` (or `= 12;`) declarations.
fn constants(src: &str) -> HashMap<String, u64> {
    let mut consts = HashMap::new();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix("const ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let name = name.split(':').next().unwrap_or("").trim();
        let value = value.split("//").next().unwrap_or("");
        let value = value.trim().trim_end_matches(';').trim();
        if let Some(v) = literal(value) {
            consts.insert(name.to_string(), v);
        }
    }
    consts
}

fn literal(s: &str) -> Option<u64> {
    s.trim_end_matches(['u', 'i']).parse().ok()
}

/// A bound: `N`, `CONST`, or `A / B`, `A * B` of those.
fn bound(expr: &str, consts: &HashMap<String, u64>) -> Result<u64> {
    let value = |t: &str| {
        literal(t)
            .or_else(|| consts.get(t).copied())
            .ok_or_else(|| error(format!("`{t}` is neither a literal nor a const")))
    };
    let tokens: Vec<&str> = expr.split_whitespace().collect();
    match tokens.as_slice() {
        [a] => value(a),
        [a, "/", b] => Ok(value(a)? / value(b)?.max(1)),
        [a, "*", b] => Ok(value(a)? * value(b)?),
        _ => Err(error(format!("cannot evaluate the loop bound `{expr}`"))),
    }
}

/// Whether `word` occurs in `s` as a whole identifier.
fn has_word(s: &str, word: &str) -> bool {
    replace_word(s, word, "\u{0}").contains('\u{0}')
}

/// `s` with every whole-identifier occurrence of `word` replaced by `with`.
fn replace_word(s: &str, word: &str, with: &str) -> String {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut from = 0; // copied up to here
    let mut search = 0;
    while let Some(i) = s[search..].find(word).map(|i| search + i) {
        let before = s[..i].chars().next_back();
        let after = s[i + word.len()..].chars().next();
        if !before.is_some_and(ident) && !after.is_some_and(ident) {
            out.push_str(&s[from..i]);
            out.push_str(with);
            from = i + word.len();
        }
        search = i + word.len();
    }
    out.push_str(&s[from..]);
    out
}

/// Expands the marked loop whose marker starts at byte `at`.
fn expand_at(src: &str, at: usize, consts: &HashMap<String, u64>) -> Result<String> {
    let after_mark = at + src[at..].find('\n').map_or(src.len() - at, |i| i + 1);
    let header_end = after_mark
        + src[after_mark..]
            .find('{')
            .ok_or_else(|| error("a `// unroll` mark without a loop after it"))?;
    let header = src[after_mark..header_end].trim();
    let (name, init, limit) = parse_header(header)?;
    let count = bound(limit, consts)?;
    let body_end = matching_brace(src, header_end)?;
    let body = &src[header_end + 1..body_end];
    for word in ["break", "continue"] {
        if has_word(body, word) {
            return Err(error(format!("`{word}` in the unrolled loop `{header}`")));
        }
    }
    let suffix = if init.ends_with('u') { "u" } else { "i" };
    let indent: String = src[after_mark..]
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    let mut out = String::with_capacity(src.len() + body.len() * count as usize);
    out.push_str(&src[..at]);
    for k in 0..count {
        out.push_str(&indent);
        out.push('{');
        out.push_str(&replace_word(body, name, &format!("{k}{suffix}")));
        out.push_str("}\n");
    }
    let rest = &src[body_end + 1..];
    out.push_str(rest.strip_prefix('\n').unwrap_or(rest));
    Ok(out)
}

/// `for (var NAME = 0u; NAME < BOUND; NAME++)` → (NAME, `0u`, BOUND).
fn parse_header(h: &str) -> Result<(&str, &str, &str)> {
    let bad = || error(format!("`{h}` is not `for (var i = 0u; i < BOUND; i++)`"));
    let inner = h
        .strip_prefix("for")
        .map(str::trim)
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split(';').map(str::trim).collect();
    let [init, cond, step] = parts.as_slice() else {
        return Err(bad());
    };
    let (name, start) = init
        .strip_prefix("var ")
        .and_then(|s| s.split_once('='))
        .map(|(n, v)| (n.trim(), v.trim()))
        .ok_or_else(bad)?;
    if literal(start) != Some(0) || *step != format!("{name}++") {
        return Err(bad());
    }
    let limit = cond
        .strip_prefix(name)
        .map(str::trim)
        .and_then(|s| s.strip_prefix('<'))
        .map(str::trim)
        .ok_or_else(bad)?;
    Ok((name, start, limit))
}

/// The offset of the `}` matching the `{` at `open`.
fn matching_brace(src: &str, open: usize) -> Result<usize> {
    let mut depth = 0usize;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(open + i);
                }
            }
            _ => {}
        }
    }
    Err(error("an unrolled loop without its closing brace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_are_written_out_with_constant_indices() {
        let src = "const MAX_NV: u32 = 4u;\nfn f() {\n    // unroll\n    for (var j = 0u; j < MAX_NV / 2u; j++) {\n        a[j] = b[j] + jj;\n    }\n    x();\n}\n";
        let out = expand(src).unwrap();
        assert!(
            out.contains("{\n        a[0u] = b[0u] + jj;\n    }\n"),
            "{out}"
        );
        assert!(out.contains("a[1u] = b[1u] + jj;"), "{out}");
        assert!(!out.contains("a[2u]") && !out.contains("for"), "{out}");
        assert!(out.contains("    x();"), "{out}");
    }

    #[test]
    fn nested_loops_unroll() {
        let src = "// unroll\nfor (var i = 0u; i < 2u; i++) {\n  // unroll\n  for (var j = 0u; j < 3u; j++) {\n    s += m[i][j];\n  }\n}\n";
        let out = expand(src).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                assert!(out.contains(&format!("m[{i}u][{j}u]")), "{out}");
            }
        }
        assert!(!out.contains("for"));
    }

    #[test]
    fn unsupported_loops_are_errors() {
        for bad in [
            "// unroll\nfor (var i = 0u; i < n; i++) {\n}\n",
            "// unroll\nfor (var i = 1u; i < 4u; i++) {\n}\n",
            "// unroll\nfor (var i = 0u; i < 4u; i++) {\n if (x) { break; }\n}\n",
            "// unroll\nlet x = 1;\n",
        ] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}

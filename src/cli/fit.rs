//! Fitting the screen to the terminal's width: sentences wrap at word
//! boundaries under an indent, names too long for their column lose their
//! middle to an ellipsis, and a table too wide for the screen drops its
//! least useful columns before its names get shorter than they can be told
//! apart. Widths are display columns (`unicode-width`), so a wide character
//! counts twice. The text given here is already [`super::printable`].

use std::borrow::Cow;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// What stands for the middle of a shortened name.
const ELLIPSIS: char = '…';

/// Columns between two table cells (comfy-table pads each side by one).
const CELL_PADDING: usize = 2;

/// Display columns of `s`.
pub(super) fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `text` wrapped to `width` columns at spaces: the first line starts with
/// `first`, the others with `rest`. A word longer than a line is broken.
pub(super) fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    // Never narrower than the indent and one character, or nothing fits.
    let width = width.max(first.len().max(rest.len()) + 1);
    let options = textwrap::Options::new(width)
        .initial_indent(first)
        .subsequent_indent(rest)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        // A path or name is one word: never split at its hyphens.
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(true);
    textwrap::wrap(text, options)
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// `s` in at most `max` columns: its start and its end (which tells most
/// names apart: a repository and tag, a pod's suffix) around an ellipsis.
/// Borrowed when it fits.
pub(super) fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    if width(s) <= max {
        return Cow::Borrowed(s);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let room = max - 1;
    let head_room = room / 3;
    let head = take_columns(s.chars(), head_room);
    let mut tail: Vec<char> = take_columns(s.chars().rev(), room - width(&head))
        .chars()
        .collect();
    tail.reverse();
    let mut out = head;
    out.push(ELLIPSIS);
    out.extend(tail);
    Cow::Owned(out)
}

/// The leading characters of `chars` that fit in `max` columns.
fn take_columns(chars: impl Iterator<Item = char>, max: usize) -> String {
    let mut used = 0;
    chars
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= max
        })
        .collect()
}

/// How a table column gives way when the screen is narrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Give {
    /// A figure: shown whole or not at all.
    Fixed,
    /// A name: shortened, but to no fewer than this many columns.
    Shorten(usize),
}

/// A table column: its header, how it gives way, and when it is dropped
/// (`0` never; otherwise the lowest goes first).
#[derive(Debug, Clone, Copy)]
pub(super) struct Column {
    /// The header cell.
    pub(super) header: &'static str,
    /// How it gives way.
    pub(super) give: Give,
    /// Its rank among the columns that may be dropped; 0 keeps it.
    pub(super) drop_rank: u8,
}

/// Which columns a table keeps, and how wide each kept one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fitted {
    /// Indexes of the kept columns, in order.
    pub(super) kept: Vec<usize>,
    /// The width of each kept column.
    pub(super) widths: Vec<usize>,
}

/// Fits `columns` holding `rows` into `width`: drops columns by rank while
/// the rest cannot fit with their names at their least, then shares the
/// room left among the names (or, with nothing left to drop, shortens them
/// further, down to their headers).
pub(super) fn fit(columns: &[Column], rows: &[Vec<String>], width: usize) -> Fitted {
    let natural: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cells = rows.iter().filter_map(|r| r.get(i)).map(|s| self::width(s));
            cells.fold(self::width(c.header), usize::max)
        })
        .collect();
    let least = |i: usize| match columns[i].give {
        Give::Fixed => natural[i],
        Give::Shorten(min) => natural[i].min(min.max(self::width(columns[i].header))),
    };
    let mut kept: Vec<usize> = (0..columns.len()).collect();
    let needed = |kept: &[usize]| kept.iter().map(|&i| least(i) + CELL_PADDING).sum::<usize>();
    while needed(&kept) > width {
        let Some(pos) = kept
            .iter()
            .enumerate()
            .filter(|(_, &i)| columns[i].drop_rank > 0)
            .min_by_key(|(_, &i)| columns[i].drop_rank)
            .map(|(pos, _)| pos)
        else {
            break;
        };
        kept.remove(pos);
    }
    let widths = share(&kept, columns, (&natural, &least), width);
    Fitted { kept, widths }
}

/// The widths of the `kept` columns: figures whole, each name at its
/// least (`least`), then what is left of `width` shared among the names,
/// the ones needing least more served first, none wider than it needs.
fn share(
    kept: &[usize],
    columns: &[Column],
    (natural, least): (&[usize], &dyn Fn(usize) -> usize),
    width: usize,
) -> Vec<usize> {
    let mut widths: Vec<usize> = kept.iter().map(|&i| least(i)).collect();
    let used: usize = widths.iter().map(|w| w + CELL_PADDING).sum();
    let mut names: Vec<usize> = (0..kept.len())
        .filter(|&pos| columns[kept[pos]].give != Give::Fixed)
        .collect();
    // Nothing left to drop and still too wide: the names go below their
    // least, widest first, down to their headers.
    let mut over = used.saturating_sub(width);
    names.sort_by_key(|&pos| std::cmp::Reverse(widths[pos]));
    for &pos in &names {
        let cut = over.min(widths[pos].saturating_sub(self::width(columns[kept[pos]].header)));
        widths[pos] -= cut;
        over -= cut;
    }
    let mut room = width.saturating_sub(used);
    names.sort_by_key(|&pos| natural[kept[pos]] - widths[pos]);
    let mut left = names.len();
    for pos in names {
        let more = (natural[kept[pos]] - widths[pos]).min(room / left.max(1));
        widths[pos] += more;
        room -= more;
        left -= 1;
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_fits_is_left_alone() {
        assert!(matches!(shorten("nginx:1.25", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_name_keeps_its_start_and_its_end() {
        let name = "registry.example.com:5000/team/backend/api-server:v1.2.3";
        let short = shorten(name, 30);
        assert_eq!(width(&short), 30, "{short}");
        assert!(short.starts_with("registry."), "{short}");
        assert!(short.ends_with("api-server:v1.2.3"), "{short}");
        assert_eq!(short.matches(ELLIPSIS).count(), 1, "{short}");
    }

    #[test]
    fn wide_characters_count_twice() {
        let short = shorten("日本語の名前がとても長いイメージ", 11);
        assert!(width(&short) <= 11, "{short}");
        assert!(short.contains(ELLIPSIS));
        assert_eq!(shorten("abc", 0), "");
    }

    #[test]
    fn sentences_wrap_at_spaces_under_an_indent() {
        let text = "the pull of 127.0.0.1:5000/team/big adds ~150.0 MB; imagefs has 3.0 GB above the hard threshold";
        let lines = wrap(text, 40, "  ", "    ");
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l) <= 40), "{lines:?}");
        assert!(lines[0].starts_with("  the"), "{lines:?}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with("    ")),
            "{lines:?}"
        );
        // Nothing is lost: the words are the same.
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn a_word_longer_than_the_line_is_broken_not_overflowing() {
        let path = format!("/{}", "d".repeat(100));
        let lines = wrap(&path, 30, "", "  ");
        assert!(lines.iter().all(|l| width(l) <= 30), "{lines:?}");
    }

    const NAME: Column = Column {
        header: "NAME",
        give: Give::Shorten(10),
        drop_rank: 0,
    };
    const SIZE: Column = Column {
        header: "SIZE",
        give: Give::Fixed,
        drop_rank: 0,
    };
    const EXTRA: Column = Column {
        header: "EXTRA",
        give: Give::Fixed,
        drop_rank: 1,
    };

    fn rows(name: &str) -> Vec<Vec<String>> {
        vec![vec![name.into(), "100.0 MB".into(), "1234567890".into()]]
    }

    #[test]
    fn a_table_that_fits_keeps_every_column_whole() {
        let fitted = fit(&[NAME, SIZE, EXTRA], &rows("nginx"), 80);
        assert_eq!(fitted.kept, [0, 1, 2]);
        assert_eq!(fitted.widths, [5, 8, 10]);
    }

    #[test]
    fn names_shorten_before_a_column_is_dropped() {
        // 20 + 8 + 10 + 3 × 2 = 44 natural; 38 fits with the name at 14.
        let fitted = fit(&[NAME, SIZE, EXTRA], &rows(&"n".repeat(20)), 38);
        assert_eq!(fitted.kept, [0, 1, 2]);
        assert_eq!(fitted.widths, [14, 8, 10]);
    }

    #[test]
    fn with_nothing_left_to_drop_names_go_below_their_least() {
        // 20 + 8 + 3 × 2 = 34 natural, 10 + 8 + 4 = 22 at least; 20 columns.
        let fitted = fit(&[NAME, SIZE], &rows(&"n".repeat(20)), 20);
        assert_eq!(fitted.kept, [0, 1]);
        assert_eq!(fitted.widths, [8, 8]);
    }

    #[test]
    fn a_droppable_column_goes_when_names_would_get_too_short() {
        // With EXTRA the name would get 6 < 10 columns: EXTRA goes.
        let fitted = fit(&[NAME, SIZE, EXTRA], &rows(&"n".repeat(20)), 30);
        assert_eq!(fitted.kept, [0, 1]);
        assert_eq!(fitted.widths, [18, 8]);
        let line: usize = fitted.widths.iter().map(|w| w + CELL_PADDING).sum();
        assert!(line <= 30);
    }
}

//! Tables as Ignite prints them: Go's `tabwriter` with tab padding (tab width 8,
//! padding 1), so columns line up in a terminal and split cleanly on tabs in scripts.

const TAB_WIDTH: usize = 8;
const PADDING: usize = 1;

/// Lays out `rows` (the header first). Every cell but the last of a row is followed by
/// enough tabs to reach its column's width.
pub fn tab_table<S: AsRef<str>>(rows: &[Vec<S>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.as_ref().chars().count() + PADDING);
        }
    }
    for w in &mut widths {
        *w = w.div_ceil(TAB_WIDTH) * TAB_WIDTH;
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.as_ref();
            out.push_str(cell);
            if i + 1 < row.len() {
                let gap = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n('\t', gap.div_ceil(TAB_WIDTH)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn matches_go_tabwriter_with_tab_padding() {
        // Ignite's own golden output (cmd/ignite/run/testdata/output/ps-table.txt).
        let rows = vec![
            row(&[
                "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS",
                "PORTS", "NAME",
            ]),
            row(&[
                "20e1d566ce318ada",
                "foo/bar:latest",
                "foo/bar:latest",
                "0 B",
                "0",
                "0 B",
                "22y ago",
                "Stopped",
                "",
                "",
                "vm1",
            ]),
        ];
        assert_eq!(
            tab_table(&rows),
            "VM ID\t\t\tIMAGE\t\tKERNEL\t\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n\
             20e1d566ce318ada\tfoo/bar:latest\tfoo/bar:latest\t0 B\t0\t0 B\t22y ago\tStopped\t\t\tvm1\n"
        );
    }
}

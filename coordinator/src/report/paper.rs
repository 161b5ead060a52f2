//! The paper's published numbers (Zhao et al., Neurocomputing 2021), shown next to a run's own results
//! and always labelled as the paper's. Only the numbers recorded in the project's reference notes
//! (`docs/datasets.md`, Table 6) are here: nothing is guessed for tables whose numbers the project does
//! not hold (Tables 4, 5 and 7), the report says so instead.

/// UF1 / UAR of one method on one part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Unweighted F1.
    pub uf1: f64,
    /// Unweighted average recall.
    pub uar: f64,
}

/// One row of the paper's Table 6.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Table6Row {
    /// Method name as the paper prints it.
    pub method: &'static str,
    /// SMIC part.
    pub smic: Pair,
    /// CASME II part.
    pub casme2: Pair,
    /// SAMM part.
    pub samm: Pair,
    /// The MEGC2019 composite (all 442 clips).
    pub composite: Pair,
}

impl Table6Row {
    /// The pair of a part key (`smic`, `casme2`, `samm`) or `all` for the composite.
    pub fn part(&self, key: &str) -> Option<Pair> {
        match key {
            "smic" => Some(self.smic),
            "casme2" => Some(self.casme2),
            "samm" => Some(self.samm),
            "all" => Some(self.composite),
            _ => None,
        }
    }
}

const fn p(uf1: f64, uar: f64) -> Pair {
    Pair { uf1, uar }
}

/// Table 6 of the paper (MEGC2019 composite 3-class protocol, LOSO over 68 subjects), UF1 / UAR.
pub const TABLE6: [Table6Row; 4] = [
    Table6Row {
        method: "LBP-TOP",
        smic: p(0.2000, 0.5280),
        casme2: p(0.7026, 0.7429),
        samm: p(0.3954, 0.4102),
        composite: p(0.5882, 0.5785),
    },
    Table6Row {
        method: "STSTNet",
        smic: p(0.6801, 0.7013),
        casme2: p(0.8382, 0.8686),
        samm: p(0.6588, 0.6810),
        composite: p(0.7353, 0.7605),
    },
    Table6Row {
        method: "EMR",
        smic: p(0.7461, 0.7530),
        casme2: p(0.8293, 0.8209),
        samm: p(0.7754, 0.7152),
        composite: p(0.7885, 0.7824),
    },
    Table6Row {
        method: "MERSiamC3D",
        smic: p(0.7356, 0.7598),
        casme2: p(0.8818, 0.8763),
        samm: p(0.7475, 0.7280),
        composite: p(0.8068, 0.7986),
    },
];

/// Where the reference numbers come from (printed under every table that shows them).
pub const SOURCE: &str = "Zhao et al., \"A two-stage 3D CNN based learning method for spontaneous micro-expression recognition\", Neurocomputing 2021, Table 6 (as recorded in docs/datasets.md)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersiamc3d_row_matches_the_reference_notes() {
        let m = TABLE6.iter().find(|r| r.method == "MERSiamC3D").unwrap();
        assert_eq!(
            m.part("all"),
            Some(Pair {
                uf1: 0.8068,
                uar: 0.7986
            })
        );
        assert_eq!(m.part("casme2").unwrap().uf1, 0.8818);
        assert!(m.part("other").is_none());
        let lbp = TABLE6[0];
        assert_eq!((lbp.smic.uf1, lbp.samm.uar), (0.2000, 0.4102));
    }
}

//! Reading a prediction file whose format the caller does not know (`mer score`, reports): the
//! predictions CSV ([`crate::predictions`]) or the MEGC2019 log ([`crate::megc_log`]). It sits above both
//! formats so that neither module needs the other's parser.

use crate::error::SharedError;
use crate::labels::LabelScheme;
use crate::predictions::{parse_csv, PredictionRecord};

/// Reads predictions in either format: the CSV (its first non-empty line is its header, with commas) or
/// the MEGC2019 log.
pub fn parse_any(
    file: &str,
    text: &str,
    scheme: LabelScheme,
) -> Result<Vec<PredictionRecord>, SharedError> {
    let first = text.lines().find(|l| !l.trim().is_empty());
    match first {
        None => Err(SharedError::Input {
            file: file.into(),
            message: "empty file".into(),
        }),
        Some(l) if l.contains(',') => parse_csv(file, text, scheme),
        Some(_) => crate::megc_log::parse(file, text, scheme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_refused_and_each_format_is_recognised() {
        let s = LabelScheme::Megc3;
        let e = parse_any("p.csv", "  \n", s).unwrap_err().to_string();
        assert!(e.contains("p.csv") && e.contains("empty"), "{e}");
        let csv = "dataset,subject,filename,label,pred\nsmic,s1,a,1,0\n";
        assert_eq!(parse_any("p.csv", csv, s).unwrap().len(), 1);
        let recs = parse_any("p.csv", csv, s).unwrap();
        let log = crate::megc_log::write(&recs);
        assert_eq!(parse_any("p.log", &log, s).unwrap(), recs);
    }
}

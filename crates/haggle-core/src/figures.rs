//! The market's headline figures defined once: which deals count as trades and what "median"
//! means, so the web summary and the experiment report show the same numbers for one market.

use crate::model::DealStatus;

/// Whether a deal counts as a trade in totals: every deal that stands, that is every status but
/// `cancelled`, `declined` (never went through) and `refunded` (undone).
pub fn counts_as_trade(status: DealStatus) -> bool {
    !matches!(
        status,
        DealStatus::Cancelled | DealStatus::Declined | DealStatus::Refunded
    )
}

/// The median; for an even count the mean of the two middle values, rounded down (to the next
/// lower minor unit), so it is always a whole amount.
pub fn median(xs: &[i64]) -> Option<i64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        ((i128::from(v[n / 2 - 1]) + i128::from(v[n / 2])).div_euclid(2)) as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two_rounded_down() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[300, 100, 200]), Some(200));
        assert_eq!(median(&[400, 100, 200, 301]), Some(250));
        assert_eq!(median(&[-3, 0]), Some(-2));
        assert_eq!(median(&[i64::MAX, i64::MAX]), Some(i64::MAX));
    }

    #[test]
    fn deals_that_never_went_through_or_were_undone_are_not_trades() {
        assert!(counts_as_trade(DealStatus::Completed));
        assert!(counts_as_trade(DealStatus::AwaitingApproval));
        assert!(!counts_as_trade(DealStatus::Refunded));
        assert!(!counts_as_trade(DealStatus::Cancelled));
    }
}

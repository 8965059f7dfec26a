//! Spend per day for the last 30 days, as an inline SVG bar chart (no script,
//! no image request), each bar titled with its day and amount.

use super::html::{dollars, escape};

const DAYS: u32 = 30;
const WIDTH: u32 = 600;
const HEIGHT: u32 = 120;

/// `charges`: (UTC day, dollars) for days with spend; `today`: the last day shown.
pub fn spend(charges: &[(u32, f64)], today: u32) -> String {
    let first = today.saturating_sub(DAYS - 1);
    let amount = |day: u32| {
        charges
            .iter()
            .filter(|(d, _)| *d == day)
            .map(|(_, a)| a)
            .sum::<f64>()
    };
    let highest = (first..=today).map(amount).fold(0.0f64, f64::max);
    let slot = WIDTH / DAYS;
    let mut bars = String::new();
    for (n, day) in (first..=today).enumerate() {
        let spent = amount(day);
        let height = match highest > 0.0 {
            true => ((spent / highest) * f64::from(HEIGHT - 20)).round() as u32,
            false => 0,
        };
        let date = date_of(day);
        bars.push_str(&format!(
            "<rect x={} y={} width={} height={} fill=#3b6fd8><title>{}: {}</title></rect>",
            n as u32 * slot + 2,
            HEIGHT - 16 - height,
            slot - 4,
            height.max(1),
            escape(&date),
            dollars(spent)
        ));
    }
    format!(
        "<svg role=img aria-label=\"Spend per day, last 30 days\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=100% \
         xmlns=http://www.w3.org/2000/svg>{bars}<text x=0 y={} font-size=11>{}</text>\
         <text x={WIDTH} y={} font-size=11 text-anchor=end>{}</text></svg>",
        HEIGHT - 2,
        escape(&date_of(first)),
        HEIGHT - 2,
        escape(&date_of(today)),
    )
}

/// `YYYY-MM-DD` of a UTC day number.
fn date_of(day: u32) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day) * 86_400);
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_bars_the_highest_full_height() {
        let svg = spend(&[(20_000, 2.0), (20_010, 0.5)], 20_010);
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains("2024-10-14: $0.50"), "{svg}");
        assert!(svg.contains("2024-10-04: $2.00"), "{svg}");
        assert!(
            svg.contains("height=100"),
            "the highest day fills the chart"
        );
        assert_eq!(spend(&[], 20_010).matches("height=1 fill").count(), 30);
    }
}

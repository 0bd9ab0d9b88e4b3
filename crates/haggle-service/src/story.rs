//! The market told in sentences for people: money in its currency, times, and one line per
//! event with participants' names and listings' titles looked up as the reader may read them.
//! The web feed and the chat channels (`webhooks.rs`, the `chat` format) tell events alike.

use crate::{Caller, Service};
use haggle_core::event::*;
use haggle_core::{Event, MandateAuthor, Money, Side};
use std::collections::HashMap;

/// Digits after the decimal point of a currency's minor unit (ISO 4217; 2 for most).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" | "PYG" | "RWF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    }
}

/// `$12.34`, `€5.00`, `1,200 JPY`.
pub fn money(amount: Money, currency: &str) -> String {
    let exp = exponent(currency);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let unit = 10u64.pow(exp);
    let whole = group(abs / unit);
    let number = if exp == 0 {
        whole
    } else {
        format!("{whole}.{:0width$}", abs % unit, width = exp as usize)
    };
    match currency {
        "USD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        _ => format!("{sign}{number} {currency}"),
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2024-05-01 14:03 UTC` from ms since the epoch (the core's one way to state a time).
pub fn time(ms: i64) -> String {
    haggle_core::model::utc(ms)
}

/// `deal_handed_over` → `deal handed over`.
pub fn words(kind: &str) -> String {
    kind.replace('_', " ")
}

/// Names and titles looked up as the viewer may read them, each once per page.
pub struct Names<'a> {
    svc: &'a Service,
    caller: &'a Caller,
    market: i64,
    people: HashMap<i64, String>,
    titles: HashMap<i64, String>,
    /// Threads read for the feed's counters and endings, as the viewer may read them.
    threads: HashMap<i64, Option<haggle_core::ThreadDetail>>,
}

impl<'a> Names<'a> {
    pub fn new(svc: &'a Service, caller: &'a Caller, market: i64) -> Names<'a> {
        Names {
            svc,
            caller,
            market,
            people: HashMap::new(),
            titles: HashMap::new(),
            threads: HashMap::new(),
        }
    }

    pub fn remember(&mut self, id: i64, name: &str) {
        self.people.insert(id, name.to_string());
    }

    pub async fn person(&mut self, id: i64) -> String {
        if let Some(n) = self.people.get(&id) {
            return n.clone();
        }
        let n = match self.svc.participant(self.caller, self.market, id).await {
            Ok(p) => p.name,
            Err(_) => format!("participant {id}"),
        };
        self.people.insert(id, n.clone());
        n
    }

    /// A thread as the viewer may read it (None when it may not), read again when it does not
    /// hold `offer` yet (a live page meets offers made after its first read).
    async fn thread(&mut self, id: i64, offer: Option<i64>) -> Option<&haggle_core::ThreadDetail> {
        let stale = match self.threads.get(&id) {
            None => true,
            Some(None) => false,
            Some(Some(d)) => offer.is_some_and(|o| !d.offers.iter().any(|x| x.id == o)),
        };
        if stale {
            let read = self
                .svc
                .thread(self.caller, self.market, id)
                .await
                .ok()
                .map(|v| v.detail);
            self.threads.insert(id, read);
        }
        self.threads.get(&id).and_then(Option::as_ref)
    }

    /// The offer made in the thread just before `offer`: (proposer, price).
    pub async fn offer_before(&mut self, thread: i64, offer: i64) -> Option<(i64, Money)> {
        self.thread(thread, Some(offer))
            .await?
            .offers
            .iter()
            .filter(|o| o.id < offer)
            .max_by_key(|o| o.id)
            .map(|o| (o.proposer, o.price))
    }

    /// An offer of a thread: (proposer, price, listing).
    pub async fn offer_in(&mut self, thread: i64, offer: i64) -> Option<(i64, Money, i64)> {
        self.thread(thread, Some(offer))
            .await?
            .offers
            .iter()
            .find(|o| o.id == offer)
            .map(|o| (o.proposer, o.price, o.listing_id))
    }

    /// The listing a thread negotiates, when the viewer may read the thread.
    pub async fn listing_of_thread(&mut self, thread: i64) -> Option<i64> {
        self.thread(thread, None).await.map(|d| d.thread.listing_id)
    }

    pub fn remember_title(&mut self, listing: i64, title: &str) {
        self.titles.insert(listing, title.to_string());
    }

    pub async fn title(&mut self, listing: i64) -> String {
        if let Some(t) = self.titles.get(&listing) {
            return t.clone();
        }
        let t = match self.svc.listing(self.caller, self.market, listing).await {
            Ok(l) => l.title,
            Err(_) => format!("listing {listing}"),
        };
        self.titles.insert(listing, t.clone());
        t
    }
}

/// One line of the feed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub seq: i64,
    pub at: String,
    /// `listings`, `offers`, `deals` or `other`: the entry's colour and filter.
    pub group: &'static str,
    pub text: String,
    pub link: Option<String>,
}

/// Which feed filter an event kind belongs to.
pub fn group_of(kind: &str) -> &'static str {
    match kind {
        "listing_posted" | "listing_withdrawn" | "listing_relisted" | "listing_expired"
        | "listing_removed" | "participant_joined" | "market_closing_set" => "listings",
        "thread_opened" | "message_posted" | "thread_closed" => "offers",
        k if k.starts_with("offer_") => "offers",
        "listing_sold" | "receipt_confirmed" | "dispute_evidence_added" => "deals",
        k if k.starts_with("payment_") => "deals",
        k if k.starts_with("deal_") => "deals",
        _ => "other",
    }
}

fn quote(s: &str) -> String {
    let cut: String = s.chars().take(140).collect();
    if cut.len() < s.len() {
        format!("“{cut}…”")
    } else {
        format!("“{cut}”")
    }
}

/// Describes an event in a sentence, with names and titles.
pub async fn describe(e: &Event, names: &mut Names<'_>, market: i64, currency: &str) -> FeedEntry {
    let actor = match e.actor {
        // Trading by hand: the feed says the principal did it, not its agent.
        Some(a) if e.by == haggle_core::ActedBy::Principal => {
            format!("{}'s principal", names.person(a).await)
        }
        Some(a) => names.person(a).await,
        None => "The market".to_string(),
    };
    let listing_link = |id: i64| Some(format!("/m/{market}/listings/{id}"));
    let deal_link = |id: i64| Some(format!("/m/{market}/deals/{id}"));
    let (text, link) = match &e.body {
        EventBody::ParticipantJoined(p) => (format!("{} joined the market", p.name), None),
        EventBody::ListingPosted(p) => {
            let l = &p.listing;
            names.remember_title(l.id, &l.title);
            let price = money(l.price, currency);
            let text = if l.side == Side::Buy {
                format!("{actor} wants {} (budget {price})", quote(&l.title))
            } else {
                format!("{actor} listed {} for {price}", quote(&l.title))
            };
            (text, listing_link(l.id))
        }
        EventBody::ListingWithdrawn(p) => {
            let title = names.title(p.listing_id).await;
            (
                format!("{actor} withdrew {}", quote(&title)),
                listing_link(p.listing_id),
            )
        }
        EventBody::ListingRelisted(p) => {
            let title = names.title(p.listing_id).await;
            (
                format!("{} is available again (its deal was undone)", quote(&title)),
                listing_link(p.listing_id),
            )
        }
        EventBody::ListingExpired(p) => {
            let title = names.title(p.listing_id).await;
            (
                format!("{} expired: the market has closed", quote(&title)),
                listing_link(p.listing_id),
            )
        }
        EventBody::ListingRemoved(p) => {
            let title = names.title(p.listing_id).await;
            (
                format!("{} was removed by an operator: {}", quote(&title), p.reason),
                listing_link(p.listing_id),
            )
        }
        EventBody::MarketClosingSet(p) => (
            match p.closes_at {
                Some(at) => format!("The market now closes at {}", time(at)),
                None => "The market no longer has a closing time".to_string(),
            },
            None,
        ),
        EventBody::ListingSold(p) => (
            format!("Sold: {} for {}", quote(&p.title), money(p.price, currency)),
            listing_link(p.listing_id),
        ),
        EventBody::ThreadOpened(p) => {
            let id = p.thread.listing_id;
            let title = names.title(id).await;
            (
                format!("{actor} started negotiating for {}", quote(&title)),
                listing_link(id),
            )
        }
        EventBody::MessagePosted(p) => {
            let title = names.title(p.listing_id).await;
            (
                format!("{actor} on {}: {}", quote(&title), quote(&p.message.body)),
                listing_link(p.listing_id),
            )
        }
        EventBody::OfferMade(p) => {
            let o = &p.offer;
            let title = names.title(o.listing_id).await;
            let price = money(o.price, currency);
            let before = if p.offers_made > 1 {
                names.offer_before(o.thread_id, o.id).await
            } else {
                None
            };
            let text = match before {
                // One line per counter: the countered offer's own event is left out of the feed.
                Some((by, was)) if Some(by) != e.actor => {
                    let other = names.person(by).await;
                    format!(
                        "{actor} countered {other}'s {} with {price} for {}",
                        money(was, currency),
                        quote(&title)
                    )
                }
                Some((_, was)) => format!(
                    "{actor} changed their offer from {} to {price} for {}",
                    money(was, currency),
                    quote(&title)
                ),
                None if p.offers_made > 1 => {
                    format!("{actor} countered with {price} for {}", quote(&title))
                }
                None => format!("{actor} offered {price} for {}", quote(&title)),
            };
            (text, listing_link(o.listing_id))
        }
        EventBody::DealCreated(p) => {
            let d = &p.deal;
            let buyer = names.person(d.buyer).await;
            let seller = names.person(d.seller).await;
            (
                format!(
                    "Deal: {buyer} buys {} from {seller} for {}",
                    quote(&d.snapshot.title),
                    money(d.price, currency)
                ),
                deal_link(d.id),
            )
        }
        // Offers already made: the line names whose offer it was (`offer_made` is above).
        body if body.offer_ref().is_some() => {
            let (offer, thread) = body.offer_ref().unwrap_or_default();
            let kind = e.kind();
            match names.offer_in(thread, offer).await {
                Some((by, price, listing)) => {
                    let whose = names.person(by).await;
                    let what = format!(
                        "{} offer of {} for {}",
                        if Some(by) == e.actor {
                            "their".to_string()
                        } else {
                            format!("{whose}'s")
                        },
                        money(price, currency),
                        quote(&names.title(listing).await)
                    );
                    let text = match &e.body {
                        EventBody::OfferAccepted(_) => format!("{actor} accepted {what}"),
                        EventBody::OfferRejected(_) => format!("{actor} rejected {what}"),
                        EventBody::OfferWithdrawn(_) => format!("{actor} withdrew {what}"),
                        body => format!(
                            "{whose}'s offer of {} for {} {}",
                            money(price, currency),
                            quote(&names.title(listing).await),
                            match body {
                                EventBody::OfferExpired(_) => "expired".to_string(),
                                EventBody::OfferVoided(_) => "was voided".to_string(),
                                _ => words(kind.trim_start_matches("offer_")),
                            }
                        ),
                    };
                    (text, listing_link(listing))
                }
                None => (
                    format!(
                        "{actor}: offer {offer} {}",
                        words(kind.trim_start_matches("offer_"))
                    ),
                    None,
                ),
            }
        }
        EventBody::ThreadClosed(p) => {
            let thread = p.thread_id;
            let listing = names.listing_of_thread(thread).await;
            let about = match listing {
                Some(l) => format!("for {}", quote(&names.title(l).await)),
                None => thread.to_string(),
            };
            let text = if p.reason == "walked_away" {
                format!("{actor} walked away: the negotiation {about} ended without a deal")
            } else {
                let why = match p.reason.as_str() {
                    "offer_cap_reached" => " (no offers left)",
                    "deadline_passed" => " (out of time)",
                    "market_closed" => " (the market closed)",
                    "listing_sold" => ": the item was sold in another negotiation",
                    "listing_withdrawn" => ": the listing was withdrawn",
                    "listing_removed" => ": the listing was removed",
                    "participant_suspended" => ": a participant was suspended",
                    _ => "",
                };
                format!("The negotiation {about} ended without a deal{why}")
            };
            (text, listing.and_then(listing_link))
        }
        EventBody::MandateChanged(p) => {
            let who = names.person(p.participant_id).await;
            let text = match p.by {
                MandateAuthor::Operator => format!("An operator changed {who}'s mandate"),
                MandateAuthor::Principal => format!("{who}'s principal changed the mandate"),
            };
            (text, None)
        }
        EventBody::TradingModeChanged(p) => {
            let who = names.person(p.participant_id).await;
            (format!("{who}'s principal {}", mode_sentence(p.mode)), None)
        }
        EventBody::TurnStarted(p) => (
            format!(
                "{}'s turn {} is open: the market waits up to {} s",
                names.person(p.participant_id).await,
                p.turn,
                p.budget_ms.div_ceil(1000)
            ),
            None,
        ),
        EventBody::TurnTimedOut(p) => (
            format!(
                "{}'s turn {} timed out: the market went on",
                names.person(p.participant_id).await,
                p.turn
            ),
            None,
        ),
        // The deal's other events (its creation, sale and relisting have their own lines above).
        body if body.deal_id().is_some() => {
            let id = body.deal_id().unwrap_or_default();
            (deal_sentence(e, &actor, currency), deal_link(id))
        }
        _ => (format!("{actor}: {}", words(e.kind())), None),
    };
    FeedEntry {
        seq: e.seq,
        at: time(e.at),
        group: group_of(e.kind()),
        text,
        link,
    }
}

/// What a principal's choice of trading mode means, as the end of a sentence.
fn mode_sentence(mode: haggle_core::TradingMode) -> &'static str {
    match mode {
        haggle_core::TradingMode::Agent => "lets its agent trade alone",
        haggle_core::TradingMode::Propose => "confirms each binding step of its agent",
        haggle_core::TradingMode::Principal => "trades by hand (its agent is paused)",
    }
}

/// A deal's event without a line of its own: a payment step says what happened to the money,
/// any other names the event (and who acted).
fn deal_sentence(e: &Event, actor: &str, currency: &str) -> String {
    if e.body.payment_deal().is_some() {
        return payment_sentence(&e.body, currency);
    }
    let id = e.body.deal_id().unwrap_or_default();
    let who = if e.actor.is_some() {
        format!("{actor}: ")
    } else {
        String::new()
    };
    format!("{who}deal {id} — {}", words(e.kind()))
}

/// A payment event told for people (issue 23): what the provider did with the buyer's money.
pub fn payment_sentence(body: &EventBody, currency: &str) -> String {
    let how = |v: haggle_core::payment::PaymentVia| match v {
        haggle_core::payment::PaymentVia::Call => "",
        haggle_core::payment::PaymentVia::Lookup => " (found at the provider)",
        haggle_core::payment::PaymentVia::Webhook => " (reported by the provider)",
    };
    match body {
        EventBody::PaymentAuthorized(p) => format!(
            "Payment for deal {}: {} held on the buyer's card{}",
            p.deal_id,
            money(p.amount, currency),
            how(p.via)
        ),
        EventBody::PaymentCaptured(p) => format!(
            "Payment for deal {}: {} charged{}{}",
            p.deal_id,
            money(p.amount, currency),
            if p.partial { ", the rest released" } else { "" },
            how(p.via)
        ),
        EventBody::PaymentVoided(p) => format!(
            "Payment for deal {}: the hold of {} was cancelled, nothing charged{}",
            p.deal_id,
            money(p.amount, currency),
            how(p.via)
        ),
        EventBody::PaymentRefunded(p) => format!(
            "Payment for deal {}: {} refunded to the buyer{}{}",
            p.deal_id,
            money(p.amount, currency),
            if p.partial {
                format!(", {} kept", money(p.charged, currency))
            } else {
                String::new()
            },
            how(p.via)
        ),
        EventBody::PaymentFailed(p) => format!(
            "Payment for deal {}: the provider refused the {} ({})",
            p.deal_id, p.step, p.code
        ),
        other => words(other.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_its_currency() {
        assert_eq!(money(123_456, "USD"), "$1,234.56");
        assert_eq!(money(5, "EUR"), "€0.05");
        assert_eq!(money(-250, "GBP"), "-£2.50");
        assert_eq!(money(1200, "JPY"), "1,200 JPY");
        assert_eq!(money(1_000, "CHF"), "10.00 CHF");
    }

    #[test]
    fn payment_events_say_what_happened_to_the_buyers_money() {
        use haggle_core::payment::{PaymentStep, PaymentVia};
        let moved = |amount, partial, via| PaymentMoved {
            deal_id: 4,
            intent: "pi_1".into(),
            amount,
            held: 0,
            charged: 600,
            partial,
            via,
        };
        let captured = EventBody::PaymentCaptured(moved(600, true, PaymentVia::Call));
        assert_eq!(
            payment_sentence(&captured, "EUR"),
            "Payment for deal 4: €6.00 charged, the rest released"
        );
        let refunded = EventBody::PaymentRefunded(moved(300, true, PaymentVia::Webhook));
        assert_eq!(
            payment_sentence(&refunded, "EUR"),
            "Payment for deal 4: €3.00 refunded to the buyer, €6.00 kept (reported by the provider)"
        );
        let failed = EventBody::PaymentFailed(PaymentFailed {
            deal_id: 4,
            step: PaymentStep::Hold,
            code: "card_declined".into(),
            attempt: 0,
        });
        assert_eq!(
            payment_sentence(&failed, "EUR"),
            "Payment for deal 4: the provider refused the hold (card_declined)"
        );
        assert_eq!(group_of("payment_failed"), "deals");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}

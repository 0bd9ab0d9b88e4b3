//! A thread at a glance: whose move it is, the live offer, offers left under the cap and time
//! left, computed from the thread, its offers and messages, the market's rules, the viewer and
//! `now`, so an agent can poll one list instead of reading every thread.

use crate::model::{
    MarketRules, Money, OfferId, OfferState, ParticipantId, ThreadStatus, Timestamp,
};
use crate::views::ThreadDetail;
use serde::{Deserialize, Serialize};

/// The offer a party may accept right now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveOffer {
    pub offer_id: OfferId,
    pub price: Money,
    /// The participant who made it.
    pub by: ParticipantId,
    pub expires_at: Timestamp,
}

/// A thread's state at a glance, as one viewer sees it at one moment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// Whether the viewer is expected to act next (see ARCHITECTURE.md, Decisions); absent when
    /// the viewer is not a party to the thread.
    pub your_move: Option<bool>,
    /// The offer still live and not yet expired, if any.
    pub live_offer: Option<LiveOffer>,
    /// Offers made in this thread by both sides.
    pub offers_made: u32,
    /// Offers left before the market's cap (absent when the market has no cap).
    pub offers_left: Option<u32>,
    /// Milliseconds until the thread times out (absent when it has no deadline or has ended).
    pub time_left_ms: Option<i64>,
    /// The latest of the thread's opening, its newest message and its newest offer.
    pub last_activity_at: Timestamp,
}

impl ThreadSummary {
    /// `viewer` is the reading participant (None for operators and observers).
    pub fn of(
        d: &ThreadDetail,
        rules: &MarketRules,
        viewer: Option<ParticipantId>,
        now: Timestamp,
    ) -> ThreadSummary {
        let t = &d.thread;
        let open = t.status == ThreadStatus::Open;
        let live_offer = d
            .offers
            .iter()
            .filter(|o| open && o.state == OfferState::Live && o.expires_at > now)
            .max_by_key(|o| (o.created_at, o.id))
            .map(|o| LiveOffer {
                offer_id: o.id,
                price: o.price,
                by: o.proposer,
                expires_at: o.expires_at,
            });
        let offers_left = rules
            .max_offers_per_thread
            .map(|cap| cap.saturating_sub(t.offers_made));
        let last_message = d.messages.iter().max_by_key(|m| (m.created_at, m.id));
        let last_offer = d.offers.iter().max_by_key(|o| (o.created_at, o.id));
        let last_activity_at = [
            Some(t.created_at),
            last_message.map(|m| m.created_at),
            last_offer.map(|o| o.created_at),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(t.created_at);
        let your_move = viewer.filter(|&v| t.is_party(v)).map(|v| {
            if !open {
                return false;
            }
            if let Some(o) = live_offer {
                // A live offer waits for its recipient's answer.
                return o.by != v;
            }
            if offers_left == Some(0) {
                // Nothing left to offer and nothing to accept: only walking away remains.
                return false;
            }
            if rules.strict_alternation && t.last_offer_by == Some(v) {
                // The viewer may not offer again before the other side does.
                return false;
            }
            // The latest act (an offer or a message; an offer wins a tie) by the other side
            // hands the move to the viewer; with no act yet the opener moves.
            let last_act = match (last_offer, last_message) {
                (Some(o), Some(m)) if m.created_at > o.created_at => Some(m.author),
                (Some(o), _) => Some(o.proposer),
                (None, Some(m)) => Some(m.author),
                (None, None) => None,
            };
            match last_act {
                Some(by) => by != v,
                None => v == t.counterparty,
            }
        });
        ThreadSummary {
            your_move,
            live_offer,
            offers_made: t.offers_made,
            offers_left,
            time_left_ms: t.deadline.filter(|_| open).map(|d| (d - now).max(0)),
            last_activity_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Offer, Thread};

    const OWNER: ParticipantId = 1;
    const OPENER: ParticipantId = 2;

    fn detail() -> ThreadDetail {
        ThreadDetail {
            thread: Thread {
                id: 7,
                market_id: 1,
                listing_id: 3,
                owner: OWNER,
                counterparty: OPENER,
                status: ThreadStatus::Open,
                offers_made: 0,
                last_offer_by: None,
                created_at: 1_000,
                deadline: Some(61_000),
            },
            messages: vec![],
            offers: vec![],
        }
    }

    fn offer(d: &mut ThreadDetail, id: OfferId, by: ParticipantId, at: Timestamp) {
        d.thread.offers_made += 1;
        d.thread.last_offer_by = Some(by);
        for o in &mut d.offers {
            o.state = OfferState::Countered;
        }
        d.offers.push(Offer {
            id,
            market_id: 1,
            thread_id: 7,
            listing_id: 3,
            proposer: by,
            buyer: OPENER,
            seller: OWNER,
            price: 500,
            state: OfferState::Live,
            created_at: at,
            expires_at: at + 10_000,
        });
    }

    fn rules(cap: Option<u32>, strict: bool) -> MarketRules {
        MarketRules {
            max_offers_per_thread: cap,
            strict_alternation: strict,
            ..MarketRules::default()
        }
    }

    #[test]
    fn a_fresh_thread_is_the_openers_move() {
        let d = detail();
        let r = rules(Some(4), false);
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OPENER), 2_000).your_move,
            Some(true)
        );
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OWNER), 2_000).your_move,
            Some(false)
        );
        assert_eq!(ThreadSummary::of(&d, &r, Some(99), 2_000).your_move, None);
        assert_eq!(ThreadSummary::of(&d, &r, None, 2_000).your_move, None);
    }

    #[test]
    fn a_live_offer_is_its_recipients_move() {
        let mut d = detail();
        offer(&mut d, 11, OPENER, 2_000);
        let r = rules(Some(4), false);
        let s = ThreadSummary::of(&d, &r, Some(OWNER), 3_000);
        assert_eq!(s.your_move, Some(true));
        assert_eq!(
            s.live_offer,
            Some(LiveOffer {
                offer_id: 11,
                price: 500,
                by: OPENER,
                expires_at: 12_000
            })
        );
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OPENER), 3_000).your_move,
            Some(false)
        );
    }

    #[test]
    fn an_expired_offer_is_not_live_and_a_later_message_passes_the_move() {
        let mut d = detail();
        offer(&mut d, 11, OPENER, 2_000);
        d.messages.push(Message {
            id: 5,
            market_id: 1,
            thread_id: 7,
            author: OWNER,
            body: "too low".into(),
            created_at: 20_000,
        });
        let r = rules(Some(4), false);
        let s = ThreadSummary::of(&d, &r, Some(OPENER), 30_000);
        assert_eq!(s.live_offer, None);
        assert_eq!(s.your_move, Some(true));
        assert_eq!(s.last_activity_at, 20_000);
    }

    #[test]
    fn strict_alternation_keeps_the_last_offerer_waiting() {
        let mut d = detail();
        offer(&mut d, 11, OPENER, 2_000);
        d.offers[0].state = OfferState::Rejected;
        d.messages.push(Message {
            id: 5,
            market_id: 1,
            thread_id: 7,
            author: OWNER,
            body: "no".into(),
            created_at: 3_000,
        });
        let strict = ThreadSummary::of(&d, &rules(Some(4), true), Some(OPENER), 4_000);
        assert_eq!(strict.your_move, Some(false));
        let free = ThreadSummary::of(&d, &rules(Some(4), false), Some(OPENER), 4_000);
        assert_eq!(free.your_move, Some(true));
    }

    #[test]
    fn offers_left_counts_down_to_zero_and_then_nobody_moves() {
        let mut d = detail();
        offer(&mut d, 11, OPENER, 2_000);
        offer(&mut d, 12, OWNER, 2_100);
        let r = rules(Some(2), false);
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OPENER), 2_200).offers_left,
            Some(0)
        );
        d.offers[1].state = OfferState::Rejected;
        let s = ThreadSummary::of(&d, &r, Some(OPENER), 2_200);
        assert_eq!((s.offers_made, s.your_move), (2, Some(false)));
        assert_eq!(
            ThreadSummary::of(&d, &rules(None, false), Some(OPENER), 2_200).offers_left,
            None
        );
    }

    #[test]
    fn time_left_runs_to_the_deadline_and_ends_with_the_thread() {
        let mut d = detail();
        let r = rules(None, false);
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OWNER), 11_000).time_left_ms,
            Some(50_000)
        );
        assert_eq!(
            ThreadSummary::of(&d, &r, Some(OWNER), 90_000).time_left_ms,
            Some(0)
        );
        d.thread.status = ThreadStatus::Broken;
        let s = ThreadSummary::of(&d, &r, Some(OWNER), 11_000);
        assert_eq!((s.time_left_ms, s.your_move), (None, Some(false)));
    }
}

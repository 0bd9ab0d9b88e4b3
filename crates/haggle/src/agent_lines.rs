//! What `haggle agent run` prints for people: one line per thing that happened to the agent
//! (its listings and offers, offers received, deals and how they closed), money in the market's
//! currency, and a summary (deals, money spent and earned, open offers) however the run ends.
//! Pure: it reads the events the agent may see and keeps a tally; `agent_cmd.rs` does the IO.

use haggle_agents::runtime::AgentStats;
use haggle_core::event::EventBody;
use haggle_core::{DealStatus, Event, Side};
use haggle_service::story::money;
use std::collections::BTreeMap;

/// A deal this agent is party to: whether it buys, and the price.
struct DealSide {
    bought: bool,
    closed: bool,
}

/// What the agent has done in the market so far, from its events.
pub struct Tally {
    /// The last event read (the next read starts after it).
    pub seen: i64,
    me: i64,
    currency: String,
    names: BTreeMap<i64, String>,
    titles: BTreeMap<i64, String>,
    deals: BTreeMap<i64, DealSide>,
    /// The agent's live offers: offer id → price.
    open_offers: BTreeMap<i64, i64>,
    pub bought: u32,
    pub sold: u32,
    /// Paid to sellers and received from buyers in closed deals (a refund is not spent).
    pub spent: i64,
    pub earned: i64,
}

fn quote(title: &str) -> String {
    format!("“{title}”")
}

impl Tally {
    pub fn new(me: i64, currency: &str) -> Tally {
        Tally {
            seen: 0,
            me,
            currency: currency.to_string(),
            names: BTreeMap::new(),
            titles: BTreeMap::new(),
            deals: BTreeMap::new(),
            open_offers: BTreeMap::new(),
            bought: 0,
            sold: 0,
            spent: 0,
            earned: 0,
        }
    }

    fn money(&self, amount: i64) -> String {
        money(amount, &self.currency)
    }

    fn name(&self, id: i64) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("participant {id}"))
    }

    fn title(&self, listing: i64) -> String {
        self.titles
            .get(&listing)
            .map(|t| quote(t))
            .unwrap_or_else(|| format!("listing {listing}"))
    }

    /// Takes in one event; the line to print when it concerns the agent.
    pub fn see(&mut self, e: &Event) -> Option<String> {
        match &e.body {
            EventBody::ParticipantJoined(p) => {
                self.names.insert(p.participant_id, p.name.clone());
                None
            }
            EventBody::ListingPosted(p) => {
                let l = &p.listing;
                self.titles.insert(l.id, l.title.clone());
                (l.owner == self.me).then(|| match l.side {
                    Side::Sell => format!("listed {} for {}", quote(&l.title), self.money(l.price)),
                    Side::Buy => format!(
                        "posted a wanted ad {} (budget {})",
                        quote(&l.title),
                        self.money(l.price)
                    ),
                })
            }
            EventBody::OfferMade(p) => self.offer_made(&p.offer),
            EventBody::DealCreated(p) => self.deal_created(&p.deal),
            EventBody::DealCompleted(p)
            | EventBody::DealCancelled(p)
            | EventBody::DealDeclined(p)
            | EventBody::DealRefunded(p)
            | EventBody::DealPartiallyRefunded(p) => self.deal_closed(p),
            body => {
                // Any other end of one of the agent's live offers (accepted, rejected,
                // withdrawn, countered, expired, voided) takes it off the open list.
                if let Some((offer, _)) = body.offer_ref()
                    && let Some(price) = self.open_offers.remove(&offer)
                    && matches!(
                        body,
                        EventBody::OfferRejected(_) | EventBody::OfferExpired(_)
                    )
                {
                    let how = if matches!(body, EventBody::OfferRejected(_)) {
                        "was rejected"
                    } else {
                        "expired"
                    };
                    return Some(format!("your offer of {} {how}", self.money(price)));
                }
                None
            }
        }
    }

    fn offer_made(&mut self, o: &haggle_core::Offer) -> Option<String> {
        let what = self.title(o.listing_id);
        let price = self.money(o.price);
        if o.proposer == self.me {
            self.open_offers.insert(o.id, o.price);
            Some(format!("offered {price} for {what}"))
        } else if o.buyer == self.me || o.seller == self.me {
            Some(format!(
                "offer received: {price} for {what} from {}",
                self.name(o.proposer)
            ))
        } else {
            None
        }
    }

    fn deal_created(&mut self, d: &haggle_core::Deal) -> Option<String> {
        let bought = d.buyer == self.me;
        if !bought && d.seller != self.me {
            return None;
        }
        self.deals.insert(
            d.id,
            DealSide {
                bought,
                closed: false,
            },
        );
        let (verb, other) = if bought {
            ("bought", format!("from {}", self.name(d.seller)))
        } else {
            ("sold", format!("to {}", self.name(d.buyer)))
        };
        Some(format!(
            "deal {}: {verb} {} {other} for {}",
            d.id,
            quote(&d.snapshot.title),
            self.money(d.price)
        ))
    }

    fn deal_closed(&mut self, p: &haggle_core::event::DealClosed) -> Option<String> {
        let side = self.deals.get_mut(&p.deal_id)?;
        side.closed = true;
        let bought = side.bought;
        if p.status == DealStatus::Completed || p.to_seller > 0 {
            if bought {
                self.bought += 1;
                self.spent += p.to_seller;
            } else {
                self.sold += 1;
                self.earned += p.to_seller;
            }
        }
        let status = serde_json::to_value(p.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
            .replace('_', " ");
        let money = if bought {
            match p.to_buyer {
                0 => format!("paid {}", self.money(p.to_seller)),
                back => format!(
                    "paid {}, {} back",
                    self.money(p.to_seller),
                    self.money(back)
                ),
            }
        } else {
            format!("received {}", self.money(p.to_seller))
        };
        Some(format!("deal {} {status}: {money}", p.deal_id))
    }

    /// The run's summary.
    pub fn summary(&self, name: &str, stats: &AgentStats) -> String {
        let open: i64 = self.open_offers.values().sum();
        let pending = self.deals.values().filter(|d| !d.closed).count();
        let refusals = if stats.refusals.is_empty() {
            "none".to_string()
        } else {
            stats
                .refusals
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "summary for {name}: {} turns, {} actions; deals: {} bought, {} sold, {} not closed yet; spent {}, earned {}; open offers: {} ({}); refusals: {refusals}",
            stats.turns,
            stats.actions,
            self.bought,
            self.sold,
            pending,
            self.money(self.spent),
            self.money(self.earned),
            self.open_offers.len(),
            self.money(open),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haggle_core::Visibility;
    use serde_json::json;

    const ME: i64 = 2;

    fn event(seq: i64, kind: &str, payload: serde_json::Value) -> Event {
        Event {
            market_id: 1,
            seq,
            at: 0,
            actor: None,
            by: haggle_core::ActedBy::Agent,
            visibility: Visibility::Public,
            body: EventBody::from_parts(kind, payload).expect("a payload of its kind"),
            prev_hash: String::new(),
            hash: String::new(),
            stored: Default::default(),
        }
    }

    fn listing(id: i64, owner: i64, side: &str, title: &str, price: i64) -> serde_json::Value {
        json!({"listing": {"id": id, "market_id": 1, "owner": owner, "side": side, "title": title,
            "description": "", "category": "home", "condition": "", "price": price,
            "attributes": {}, "status": "active", "created_at": 0, "first_offer_at": null}})
    }

    fn offer(id: i64, proposer: i64, price: i64) -> serde_json::Value {
        json!({"offers_made": 1, "offer": {"id": id, "market_id": 1, "thread_id": 4,
            "listing_id": 10, "proposer": proposer, "buyer": 3, "seller": ME, "price": price,
            "state": "live", "created_at": 0, "expires_at": 1}})
    }

    fn deal(buyer: i64, seller: i64, price: i64) -> serde_json::Value {
        json!({"deal": {"id": 7, "market_id": 1, "listing_id": 10, "thread_id": 4,
            "offer_id": 5, "buyer": buyer, "seller": seller, "price": price, "status": "agreed",
            "snapshot": {"side": "sell", "title": "Oak desk", "description": "",
                "category": "home", "condition": "", "price": 5_000, "attributes": {}},
            "created_at": 0, "approval_deadline": null}})
    }

    fn seller_tally() -> Tally {
        let mut t = Tally::new(ME, "USD");
        t.see(&event(
            1,
            "participant_joined",
            json!({"participant_id": 3, "name": "Bea"}),
        ));
        t
    }

    #[test]
    fn own_listings_read_with_their_money() {
        let mut t = seller_tally();
        assert_eq!(
            t.see(&event(
                2,
                "listing_posted",
                listing(10, ME, "sell", "Oak desk", 123_456)
            )),
            Some("listed “Oak desk” for $1,234.56".into())
        );
        assert_eq!(
            t.see(&event(
                3,
                "listing_posted",
                listing(11, ME, "buy", "Wanted: lamp", 900)
            )),
            Some("posted a wanted ad “Wanted: lamp” (budget $9.00)".into())
        );
        assert_eq!(
            t.see(&event(
                4,
                "listing_posted",
                listing(12, 3, "sell", "Chair", 100)
            )),
            None,
            "others' listings are not the agent's news"
        );
    }

    #[test]
    fn offers_received_name_who_offered_what_for_which_listing() {
        let mut t = seller_tally();
        t.see(&event(
            2,
            "listing_posted",
            listing(10, ME, "sell", "Oak desk", 5_000),
        ));
        assert_eq!(
            t.see(&event(3, "offer_made", offer(5, 3, 4_500))),
            Some("offer received: $45.00 for “Oak desk” from Bea".into())
        );
    }

    #[test]
    fn deals_and_their_close_count_in_the_summary() {
        let mut t = seller_tally();
        t.see(&event(
            2,
            "listing_posted",
            listing(10, ME, "sell", "Oak desk", 5_000),
        ));
        assert_eq!(
            t.see(&event(3, "offer_made", offer(6, ME, 4_800))),
            Some("offered $48.00 for “Oak desk”".into())
        );
        assert_eq!(
            t.see(&event(4, "deal_created", deal(3, ME, 4_800))),
            Some("deal 7: sold “Oak desk” to Bea for $48.00".into())
        );
        t.see(&event(
            5,
            "offer_accepted",
            json!({"offer_id": 6, "thread_id": 4}),
        ));
        assert_eq!(
            t.see(&event(
                6,
                "deal_completed",
                json!({"deal_id": 7, "status": "completed", "to_buyer": 0,
                    "to_seller": 4_800, "reason": "confirmed"})
            )),
            Some("deal 7 completed: received $48.00".into())
        );
        let stats = AgentStats {
            turns: 3,
            actions: 2,
            ..AgentStats::default()
        };
        assert_eq!(
            t.summary("Sam", &stats),
            "summary for Sam: 3 turns, 2 actions; deals: 0 bought, 1 sold, 0 not closed yet; \
             spent $0.00, earned $48.00; open offers: 0 ($0.00); refusals: none"
        );
    }

    #[test]
    fn a_live_offer_counts_as_open_until_it_ends() {
        let mut t = Tally::new(3, "EUR");
        t.see(&event(1, "offer_made", offer(5, 3, 4_500)));
        let stats = AgentStats::default();
        assert!(
            t.summary("Bea", &stats).contains("open offers: 1 (€45.00)"),
            "{}",
            t.summary("Bea", &stats)
        );
        assert_eq!(
            t.see(&event(
                2,
                "offer_rejected",
                json!({"offer_id": 5, "thread_id": 4})
            )),
            Some("your offer of €45.00 was rejected".into())
        );
        assert!(t.summary("Bea", &stats).contains("open offers: 0 (€0.00)"));
    }
}

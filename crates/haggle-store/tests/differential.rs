//! The simulation's store is provably the database: random command sequences run against a
//! plain SQLite store (every read is SQL) and a batched one (reads answered from its memory and
//! shelves where it can), and after every command both give the same answer to the command and
//! to every read an agent makes.

use haggle_core::negotiation::NewListing;
use haggle_core::{ClockMode, ListingQuery, ListingSort, MarketRules, Side};
use haggle_store::{Command, NewMarket, NewOffer, Outcome, Ran, Store, Viewer};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

const T0: i64 = 1_700_000_000_000;
/// Participants of each generated market (the first three trade; the last watches).
const PARTIES: usize = 4;
const WORDS: [&str; 4] = ["bike", "lamp", "desk", "road"];

/// One step of a generated market. Indices pick among the rows made so far (modulo their count),
/// so every sequence is valid to run and most steps hit a real row.
#[derive(Debug, Clone)]
enum Step {
    List {
        owner: usize,
        buy: bool,
        price: i64,
        word: usize,
    },
    Withdraw {
        actor: Option<usize>,
        listing: usize,
    },
    Open {
        actor: Option<usize>,
        listing: usize,
        price: Option<i64>,
    },
    Offer {
        actor: Option<usize>,
        thread: usize,
        price: i64,
    },
    Accept {
        actor: Option<usize>,
        offer: usize,
    },
    Reject {
        actor: Option<usize>,
        offer: usize,
    },
    WithdrawOffer {
        actor: Option<usize>,
        offer: usize,
    },
    WalkAway {
        actor: Option<usize>,
        thread: usize,
    },
    HandOver {
        actor: Option<usize>,
        deal: usize,
    },
    Confirm {
        actor: Option<usize>,
        deal: usize,
    },
    Cancel {
        actor: Option<usize>,
        deal: usize,
    },
    Rate {
        actor: Option<usize>,
        deal: usize,
        score: u8,
    },
    Advance {
        minutes: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    // Mostly the party who may act (`None`, read from the rows), sometimes anyone: refusals must
    // match too, but a market where nobody may act never reaches deals and handovers.
    let who = proptest::option::weighted(0.2, 0..PARTIES);
    let pick = 0usize..64;
    let price = 1i64..3_000;
    prop_oneof![
        3 => (0..PARTIES, any::<bool>(), price.clone(), 0..WORDS.len())
            .prop_map(|(owner, buy, price, word)| Step::List { owner, buy, price, word }),
        1 => (who.clone(), pick.clone()).prop_map(|(actor, listing)| Step::Withdraw { actor, listing }),
        4 => (who.clone(), pick.clone(), proptest::option::of(price.clone()))
            .prop_map(|(actor, listing, price)| Step::Open { actor, listing, price }),
        3 => (who.clone(), pick.clone(), price.clone())
            .prop_map(|(actor, thread, price)| Step::Offer { actor, thread, price }),
        3 => (who.clone(), pick.clone()).prop_map(|(actor, offer)| Step::Accept { actor, offer }),
        1 => (who.clone(), pick.clone()).prop_map(|(actor, offer)| Step::Reject { actor, offer }),
        1 => (who.clone(), pick.clone()).prop_map(|(actor, offer)| Step::WithdrawOffer { actor, offer }),
        1 => (who.clone(), pick.clone()).prop_map(|(actor, thread)| Step::WalkAway { actor, thread }),
        2 => (who.clone(), pick.clone()).prop_map(|(actor, deal)| Step::HandOver { actor, deal }),
        2 => (who.clone(), pick.clone()).prop_map(|(actor, deal)| Step::Confirm { actor, deal }),
        1 => (who.clone(), pick.clone()).prop_map(|(actor, deal)| Step::Cancel { actor, deal }),
        1 => (who, pick, 1u8..=5).prop_map(|(actor, deal, score)| Step::Rate { actor, deal, score }),
        1 => (1i64..24 * 60).prop_map(|minutes| Step::Advance { minutes }),
    ]
}

/// The ids both stores handed out so far (equal, since their answers are compared).
#[derive(Default)]
struct Rows {
    parties: Vec<i64>,
    listings: Vec<i64>,
    threads: Vec<i64>,
    offers: Vec<i64>,
    deals: Vec<i64>,
}

fn pick(ids: &[i64], i: usize) -> i64 {
    // No row yet: an id no store has, which every store must refuse alike.
    ids.get(i % ids.len().max(1)).copied().unwrap_or(999_999)
}

impl Rows {
    /// The step as a command, its missing actor read from the plain store's rows.
    async fn command(&self, store: &Store, market: i64, s: &Step) -> Command {
        let who = |i: usize| self.parties[i % self.parties.len()];
        let offer = |i: usize| async move {
            let id = pick(&self.offers, i);
            (id, store.offer(market, id).await.unwrap())
        };
        let deal = |i: usize| async move {
            let id = pick(&self.deals, i);
            (id, store.deal(market, id).await.unwrap())
        };
        let thread = |i: usize| async move {
            let id = pick(&self.threads, i);
            let t = store.thread(market, id).await.unwrap();
            (id, t.map(|d| d.thread))
        };
        // A step on a row that does not exist needs some actor: the first party.
        let first = self.parties[0];
        match *s {
            Step::List {
                owner,
                buy,
                price,
                word,
            } => Command::CreateListing {
                actor: who(owner),
                listing: NewListing {
                    side: if buy { Side::Buy } else { Side::Sell },
                    title: format!("{} number {price}", WORDS[word]),
                    description: "in good shape".into(),
                    category: if word % 2 == 0 { "bikes" } else { "home" }.into(),
                    condition: "used".into(),
                    price,
                    attributes: BTreeMap::new(),
                    claims: Default::default(),
                    true_state: None,
                    fulfilment: Default::default(),
                    true_transit: None,
                },
            },
            Step::Withdraw { actor, listing } => {
                let id = pick(&self.listings, listing);
                let owner = store.listing(market, id).await.unwrap().map(|l| l.owner);
                Command::WithdrawListing {
                    actor: actor.map(who).or(owner).unwrap_or(first),
                    listing: id,
                }
            }
            Step::Open {
                actor,
                listing,
                price,
            } => {
                let id = pick(&self.listings, listing);
                let owner = store.listing(market, id).await.unwrap().map(|l| l.owner);
                // Anyone but the owner: the party after it.
                let other = owner.and_then(|o| {
                    let i = self.parties.iter().position(|&p| p == o)?;
                    Some(self.parties[(i + 1) % PARTIES.min(3)])
                });
                Command::OpenThread {
                    actor: actor.map(who).or(other).unwrap_or(first),
                    listing: id,
                    message: Some("hello".into()),
                    offer: price.map(|price| NewOffer {
                        price,
                        expires_in_ms: None,
                    }),
                }
            }
            Step::Offer {
                actor,
                thread: i,
                price,
            } => {
                let (id, t) = thread(i).await;
                // The party who did not make the last offer.
                let next = t.map(|t| {
                    if t.last_offer_by == Some(t.counterparty) {
                        t.owner
                    } else {
                        t.counterparty
                    }
                });
                Command::MakeOffer {
                    actor: actor.map(who).or(next).unwrap_or(first),
                    thread: id,
                    offer: NewOffer {
                        price,
                        expires_in_ms: None,
                    },
                }
            }
            Step::Accept { actor, offer: i } => {
                let (id, o) = offer(i).await;
                Command::AcceptOffer {
                    actor: actor.map(who).or(o.map(|o| o.recipient())).unwrap_or(first),
                    offer: id,
                }
            }
            Step::Reject { actor, offer: i } => {
                let (id, o) = offer(i).await;
                Command::RejectOffer {
                    actor: actor.map(who).or(o.map(|o| o.recipient())).unwrap_or(first),
                    offer: id,
                }
            }
            Step::WithdrawOffer { actor, offer: i } => {
                let (id, o) = offer(i).await;
                Command::WithdrawOffer {
                    actor: actor.map(who).or(o.map(|o| o.proposer)).unwrap_or(first),
                    offer: id,
                }
            }
            Step::WalkAway { actor, thread: i } => {
                let (id, t) = thread(i).await;
                Command::WalkAway {
                    actor: actor
                        .map(who)
                        .or(t.map(|t| t.counterparty))
                        .unwrap_or(first),
                    thread: id,
                }
            }
            Step::HandOver { actor, deal: i } => {
                let (id, d) = deal(i).await;
                Command::HandOver {
                    actor: actor.map(who).or(d.map(|d| d.seller)).unwrap_or(first),
                    deal: id,
                    note: Some("at the door".into()),
                }
            }
            Step::Confirm { actor, deal: i } => {
                let (id, d) = deal(i).await;
                Command::ConfirmReceipt {
                    actor: actor.map(who).or(d.map(|d| d.buyer)).unwrap_or(first),
                    deal: id,
                }
            }
            Step::Cancel { actor, deal: i } => {
                let (id, d) = deal(i).await;
                Command::CancelDeal {
                    actor: actor.map(who).or(d.map(|d| d.buyer)).unwrap_or(first),
                    deal: id,
                    reason: None,
                }
            }
            Step::Rate {
                actor,
                deal: i,
                score,
            } => {
                let (id, d) = deal(i).await;
                // Both parties rate; an odd score is the seller's.
                let party = d.map(|d| if score % 2 == 0 { d.buyer } else { d.seller });
                Command::Rate {
                    actor: actor.map(who).or(party).unwrap_or(first),
                    deal: id,
                    score,
                    comment: String::new(),
                }
            }
            Step::Advance { minutes } => Command::AdvanceClock {
                by_ms: minutes * 60_000,
            },
        }
    }

    /// Remembers the rows an accepted command made.
    fn learn(&mut self, out: &Outcome) {
        match out {
            Outcome::Participant(p) => self.parties.push(p.id),
            Outcome::Listing(l) => self.listings.push(l.id),
            Outcome::Thread { thread, offer, .. } => {
                if !self.threads.contains(&thread.id) {
                    self.threads.push(thread.id);
                }
                self.offers.extend(offer.as_ref().map(|o| o.id));
            }
            Outcome::Offer(o) => self.offers.push(o.id),
            Outcome::Deal(d) => self.deals.push(d.id),
            _ => {}
        }
    }
}

/// A temporary SQLite file, removed with its WAL when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        TempDb(haggle_testkit::temp_dir("differential").join(format!("{name}.db")))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs one command on both stores; their answers (result and events) must be the same.
async fn both(plain: &Store, batched: &Store, market: i64, cmd: Command, what: &str) -> Ran {
    let x = plain.run(market, T0, cmd.clone(), None).await.unwrap();
    let y = batched.run(market, T0, cmd, None).await.unwrap();
    assert_eq!(format!("{x:?}"), format!("{y:?}"), "{what}");
    x
}

/// Every read an agent makes of the market (debug-printed: the comparison is all that counts).
async fn reads(store: &Store, market: i64, parties: &[i64]) -> Vec<String> {
    let mut out = vec![format!("{:?}", store.market(market).await.unwrap())];
    for &p in parties {
        out.push(format!("{:?}", store.participant(market, p).await.unwrap()));
        out.push(format!("{:?}", store.balance(market, p, T0).await.unwrap()));
        out.push(format!(
            "{:?}",
            store.reputation(market, p, T0).await.unwrap()
        ));
        out.push(format!(
            "{:?}",
            store.deals(market, Some(p), 0, 500).await.unwrap()
        ));
        let threads = store.threads(market, Some(p), None, 0, 500).await.unwrap();
        for t in &threads {
            out.push(format!("{:?}", store.thread(market, t.id).await.unwrap()));
        }
        out.push(format!("{threads:?}"));
        out.push(format!(
            "{:?}",
            store.events(market, Viewer::Own(p), 0, 500).await.unwrap()
        ));
        out.push(format!(
            "{:?}",
            store
                .search_listings(
                    market,
                    &ListingQuery {
                        owner: Some(p),
                        limit: Some(500),
                        ..ListingQuery::default()
                    }
                )
                .await
                .unwrap()
        ));
    }
    for category in ["bikes", "home"] {
        for side in [Side::Sell, Side::Buy] {
            // `None`: the default order (relevance with words, else newest).
            for sort in [
                None,
                Some(ListingSort::Newest),
                Some(ListingSort::Cheapest),
                Some(ListingSort::Relevance),
            ] {
                for q in [None, Some("bike"), Some("la*"), Some("number")] {
                    let query = ListingQuery {
                        q: q.map(Into::into),
                        category: Some(category.into()),
                        side: Some(side),
                        sort,
                        limit: Some(500),
                        ..ListingQuery::default()
                    };
                    out.push(format!(
                        "{:?}",
                        store.search_listings(market, &query).await.unwrap()
                    ));
                }
            }
        }
    }
    out
}

async fn create(store: &Store) -> i64 {
    let m = store
        .create_market(
            NewMarket {
                name: "differential".into(),
                currency: "EUR".into(),
                clock_mode: ClockMode::Simulated,
                sim_start: T0,
                rules: MarketRules::default(),
            },
            T0,
        )
        .await
        .expect("create market");
    m.id
}

async fn compare(steps: Vec<Step>) {
    let (plain_db, batched_db) = (TempDb::new("plain"), TempDb::new("batched"));
    let plain = Store::open(&plain_db.url()).await.unwrap();
    // A batch of 3 commands: reads see commands both inside an open batch and after commits.
    let batched = Store::open_batched(&batched_db.url(), 3).await.unwrap();
    let (a, b) = (create(&plain).await, create(&batched).await);
    assert_eq!(a, b);
    let mut rows = Rows::default();
    let learn = |ran: &Ran, rows: &mut Rows| {
        if let Ran::Fresh {
            result: Ok(out), ..
        } = ran
        {
            rows.learn(out);
        }
    };
    for i in 0..PARTIES {
        let cmd = Command::RegisterParticipant {
            name: format!("p{i}"),
            mandate: Default::default(),
            budget: 5_000,
        };
        let ran = both(&plain, &batched, a, cmd, "register").await;
        learn(&ran, &mut rows);
    }
    assert_eq!(rows.parties.len(), PARTIES);
    for (n, s) in steps.iter().enumerate() {
        let cmd = rows.command(&plain, a, s).await;
        let ran = both(&plain, &batched, a, cmd, &format!("step {n}: {s:?}")).await;
        learn(&ran, &mut rows);
        let (x, y) = (
            reads(&plain, a, &rows.parties).await,
            reads(&batched, a, &rows.parties).await,
        );
        assert_eq!(x.len(), y.len());
        for (i, (x, y)) in x.iter().zip(&y).enumerate() {
            assert_eq!(x, y, "step {n} ({s:?}), read {i}");
        }
    }
    let verified = batched.verify(a).await.unwrap();
    assert!(verified.ok(), "{verified:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_batched_store_answers_every_read_as_the_tables_do(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(compare(steps));
    }
}

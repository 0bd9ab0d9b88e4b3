//! The agent runtime: each turn it reads what the market shows the agent (through
//! `MarketClient` only), builds the brain's [`View`], runs the brain, and carries out its actions.
//! Refusals are counted, never fatal: a brain cannot break a rule, and a bad action costs a turn.
//! Brains that call tools (LLMs) get them through [`ToolBox`], run here with the same client; every
//! outgoing text is checked for the agent's private numbers (counted, optionally withheld).

use crate::brain::{Action, BoxFuture, Brain, Candidate, Role, ThreadState, ToolBox, View};
use crate::leaks::PrivateNumbers;
use crate::profile::Profile;
use crate::sequencer::{MarketHold, Sequencer};
use crate::tools::{self, ToolError};
use haggle_api::ErrorBody;
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::limits::{MAX_EVENTS, MAX_PAGE};
use haggle_api::haggle_core::{
    Deal, Event, Fulfilment, Listing, ListingStatus, Side, ThreadStatus,
};
use haggle_api::{
    ClientError, ListingQuery, ListingSort, MakeOffer, MarketClient, NewListing, OpenThread,
    ThreadFilter,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Searches for a want's candidates at most this often (in the agent's turns).
const SEARCH_EVERY: u64 = 3;
/// Bounds on what one turn reads and does.
const MAX_ACTIONS_PER_TURN: usize = 32;
const MAX_EVENT_PAGES: usize = 5;

/// What an agent did over its life: for conduct metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentStats {
    pub turns: u64,
    pub actions: u64,
    /// Refusals by the market, by error code.
    pub refusals: BTreeMap<String, u64>,
    /// Outgoing texts that contained a private number (floor, maximum, budget), and how many
    /// of them were withheld instead of sent.
    #[serde(default)]
    pub leaks: u64,
    #[serde(default)]
    pub leaks_withheld: u64,
    /// Tool calls made through the [`ToolBox`] (reads included).
    #[serde(default)]
    pub tool_calls: u64,
}

/// One participant's agent: its profile, brain and client, and what it remembers between turns.
pub struct Agent<C: MarketClient> {
    pub profile: Profile,
    pub client: C,
    pub brain: Box<dyn Brain>,
    pub stats: AgentStats,
    private: PrivateNumbers,
    /// Withhold (rather than only count) outgoing texts with a private number.
    withhold_leaks: bool,
    /// Show brains every seller's record as empty (the lab's arm without reputation).
    hide_reputation: bool,
    last_seq: i64,
    turns: u64,
    /// Listing id → the profile item (`item_id`) or want (`want_id`) it stands for.
    listing_subject: BTreeMap<i64, String>,
    /// Thread id → the item or want it is about, and turns spent on it.
    thread_subject: BTreeMap<i64, String>,
    thread_turns: BTreeMap<i64, u32>,
    /// Listings this agent opened a thread on (never reopen).
    contacted: BTreeSet<i64>,
    /// Listings of this agent's threads as first read (others' content is frozen once a thread
    /// exists): a candidate or lead as this turn's search showed it, once contacted
    /// ([`Agent::keep_contacted`]), or read when a thread's listing was not here.
    listing_cache: BTreeMap<i64, Listing>,
    /// Open threads' views as last read; a thread is read again only when an event names it, and
    /// forgotten once it is no longer open (a thread never reopens).
    thread_cache: BTreeMap<i64, haggle_api::ThreadView>,
    /// Whether the last view left something to do without any news (items to list, wants or
    /// items to search for), so the next turn must look even if nothing happened.
    pending: bool,
    awake: bool,
    synced: bool,
    /// `has_news` said yes and no turn has read the news yet: the turn need not ask again.
    news: bool,
    /// The market's gate when turns of the market run concurrently (`None`: this agent is the
    /// market's only user while it acts).
    market: Option<Arc<Sequencer>>,
}

fn item_listing(item: &crate::profile::SellItem, price: i64) -> NewListing {
    let mut attributes = item.attributes.clone();
    attributes.insert("item_id".into(), item.item_id.clone());
    attributes.insert("item_type".into(), item.item_type.clone());
    NewListing {
        side: Side::Sell,
        title: item.title.clone(),
        description: item.description.clone(),
        category: item.category.clone(),
        condition: item.condition.clone(),
        price,
        attributes,
        claims: item.claims.clone(),
        true_state: item.true_state.clone(),
        true_transit: item.true_transit,
        fulfilment: item
            .shipping_price
            .map_or(Fulfilment::InPerson, |p| Fulfilment::Shipping {
                shipping_price: p,
            }),
    }
}

fn wanted_listing(w: &crate::profile::Want, price: i64) -> NewListing {
    let mut attributes = BTreeMap::new();
    attributes.insert("want_id".into(), w.want_id.clone());
    attributes.insert("item_type".into(), w.item_type.clone());
    NewListing {
        side: Side::Buy,
        title: format!("Wanted: {}", w.item_type),
        description: w.description.clone(),
        category: w.category.clone(),
        condition: String::new(),
        price,
        attributes,
        claims: Default::default(),
        true_state: None,
        true_transit: None,
        fulfilment: Fulfilment::InPerson,
    }
}

/// The thread an event is about, if any.
/// Deals that count as bought or sold (not undone).
fn counts(d: &Deal) -> bool {
    d.status.is_spent()
}

impl<C: MarketClient> Agent<C> {
    pub fn new(profile: Profile, client: C, brain: Box<dyn Brain>) -> Agent<C> {
        let private = PrivateNumbers::of(&profile);
        Agent {
            profile,
            client,
            brain,
            stats: AgentStats::default(),
            private,
            withhold_leaks: false,
            hide_reputation: false,
            last_seq: 0,
            turns: 0,
            listing_subject: BTreeMap::new(),
            thread_subject: BTreeMap::new(),
            thread_turns: BTreeMap::new(),
            contacted: BTreeSet::new(),
            listing_cache: BTreeMap::new(),
            thread_cache: BTreeMap::new(),
            pending: true,
            awake: false,
            synced: false,
            news: false,
            market: None,
        }
    }

    /// Takes the market through `seq` for every stretch of a turn that reads or writes it.
    pub fn sequenced(mut self, seq: Arc<Sequencer>) -> Agent<C> {
        self.market = Some(seq);
        self
    }

    /// Holds the market (through its sequencer, if any) until the hold is dropped.
    pub async fn enter_market(&self) -> Option<MarketHold> {
        match &self.market {
            Some(seq) => Some(seq.enter(&self.profile.name).await),
            None => None,
        }
    }

    /// Counts an applied action for the first-mover figure.
    fn applied(&self) {
        if let Some(seq) = &self.market {
            seq.acted(&self.profile.name);
        }
    }

    /// Withholds outgoing texts that contain a private number instead of only counting them.
    /// Hides every participant's reputation from the brain (each reads as an empty record), so
    /// a run can measure what reputation is worth.
    pub fn hide_reputation(mut self, on: bool) -> Agent<C> {
        self.hide_reputation = on;
        self
    }

    pub fn withhold_leaks(mut self, on: bool) -> Agent<C> {
        self.withhold_leaks = on;
        self
    }

    /// Counts a leak in `text`; whether the text must be withheld.
    fn leak_check(&mut self, text: &str) -> bool {
        if self.private.found_in(text).is_none() {
            return false;
        }
        self.stats.leaks += 1;
        if self.withhold_leaks {
            self.stats.leaks_withheld += 1;
        }
        self.withhold_leaks
    }

    /// The profile item (`item_id`) or want (`want_id`) a thread of this agent was about.
    pub fn thread_subject(&self, thread: i64) -> Option<&str> {
        self.thread_subject.get(&thread).map(String::as_str)
    }

    fn refused(&mut self, e: &ClientError) {
        *self
            .stats
            .refusals
            .entry(e.code().as_str().to_string())
            .or_default() += 1;
    }

    fn me(&self) -> i64 {
        self.client.participant_id()
    }

    /// Learns what this participant already has in the market (for an agent joining late).
    async fn sync(&mut self) -> Result<(), ClientError> {
        for status in [
            ListingStatus::Active,
            ListingStatus::Sold,
            ListingStatus::Withdrawn,
        ] {
            let mut cursor = None;
            for _page in 0..20 {
                let q = ListingQuery {
                    owner: Some(self.me()),
                    status: Some(status),
                    limit: Some(MAX_PAGE),
                    cursor: cursor.clone(),
                    ..Default::default()
                };
                let page = self.client.search(&q).await?;
                for l in &page.items {
                    if let Some(s) = l
                        .attributes
                        .get("item_id")
                        .or_else(|| l.attributes.get("want_id"))
                    {
                        self.listing_subject.insert(l.id, s.clone());
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        self.recover_bought_subjects().await?;
        self.synced = true;
        Ok(())
    }

    /// After a restart (`haggle agent run` again), learns which want each deal this participant
    /// bought through a seller's listing met: the thread's subject was this process's memory, and
    /// without it a met want would look unmet and get a wanted ad again. A deal on its own wanted
    /// ad names its want already; another is matched to a want of the listing's `item_type`
    /// (else its category) that is not full yet. An agent that starts with the market (every
    /// simulation) has no deals here, so nothing changes for it.
    async fn recover_bought_subjects(&mut self) -> Result<(), ClientError> {
        let me = self.me();
        let mut deals = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let page = self.client.deals(cursor.as_deref()).await?;
            deals.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut filled: BTreeMap<String, u32> = BTreeMap::new();
        let mine = deals.iter().filter(|d| d.buyer == me && counts(d));
        let (named, unnamed): (Vec<&Deal>, Vec<&Deal>) =
            mine.partition(|d| d.snapshot.attributes.contains_key("want_id"));
        for d in named {
            *filled
                .entry(d.snapshot.attributes["want_id"].clone())
                .or_default() += 1;
        }
        for d in unnamed {
            if self.thread_subject.contains_key(&d.thread_id) {
                continue;
            }
            let attrs = &d.snapshot.attributes;
            let fits = |w: &&crate::profile::Want| match attrs.get("item_type") {
                Some(t) => *t == w.item_type,
                None => d.snapshot.category == w.category,
            };
            let want = self
                .profile
                .want
                .iter()
                .filter(fits)
                .find(|w| filled.get(&w.want_id).copied().unwrap_or(0) < w.quantity);
            if let Some(w) = want {
                *filled.entry(w.want_id.clone()).or_default() += 1;
                self.thread_subject.insert(d.thread_id, w.want_id.clone());
            }
        }
        Ok(())
    }

    /// Builds the brain's view of the market for this turn.
    pub async fn observe(&mut self, now: i64, round: u64) -> Result<View, ClientError> {
        if !self.synced {
            self.sync().await?;
        }
        let me = self.me();
        self.news = false;
        let new_events = self.new_events().await?;
        let balance = self.client.balance().await?;
        let my_listings = self
            .client
            .search(&ListingQuery {
                owner: Some(me),
                limit: Some(MAX_PAGE),
                ..Default::default()
            })
            .await?
            .items;
        let deals = self.all_deals().await?;
        let (sold, unlisted, unmet_wants) = self.progress(me, &deals);
        let threads = self.open_threads(me, &my_listings, &new_events).await?;
        // Only open threads are read from the cache; a 10,000-participant market closes most of
        // its threads, and each party kept every view it ever read.
        self.thread_cache
            .retain(|id, _| threads.iter().any(|t| t.thread.detail.thread.id == *id));
        let (mut candidates, mut buyer_leads) = (Vec::new(), Vec::new());
        if self.turns.is_multiple_of(SEARCH_EVERY) {
            let mut reputations = BTreeMap::new();
            candidates = self.candidates(me, &unmet_wants, &mut reputations).await?;
            buyer_leads = self.buyer_leads(me, &sold, &mut reputations).await?;
        }
        Ok(View {
            now,
            round,
            me,
            balance,
            my_listings,
            unlisted,
            unmet_wants,
            threads,
            deals,
            candidates,
            buyer_leads,
            new_events,
        })
    }

    /// The events since the last turn (at most [`MAX_EVENT_PAGES`] pages).
    async fn new_events(&mut self) -> Result<Vec<Event>, ClientError> {
        let mut new_events = Vec::new();
        for _ in 0..MAX_EVENT_PAGES {
            let page = self.client.events(self.last_seq, MAX_EVENTS, true).await?;
            let done = page.events.len() < MAX_EVENTS as usize;
            self.last_seq = page.next_after;
            new_events.extend(page.events);
            if done {
                break;
            }
        }
        Ok(new_events)
    }

    /// The agent's deals, in every state.
    async fn all_deals(&mut self) -> Result<Vec<Deal>, ClientError> {
        let mut deals = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let page = self.client.deals(cursor.as_deref()).await?;
            deals.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(deals)
    }

    /// What is sold already (by item), and what is still to list and to buy.
    fn progress(&self, me: i64, deals: &[Deal]) -> (BTreeSet<String>, Vec<String>, Vec<String>) {
        // What is sold or bought already, by item and want.
        let sold: BTreeSet<String> = deals
            .iter()
            .filter(|d| d.seller == me && counts(d))
            .filter_map(|d| {
                self.thread_subject
                    .get(&d.thread_id)
                    .cloned()
                    .or_else(|| d.snapshot.attributes.get("item_id").cloned())
            })
            .collect();
        let mut bought: BTreeMap<String, u32> = BTreeMap::new();
        for d in deals.iter().filter(|d| d.buyer == me && counts(d)) {
            if let Some(w) = self
                .thread_subject
                .get(&d.thread_id)
                .cloned()
                .or_else(|| d.snapshot.attributes.get("want_id").cloned())
            {
                *bought.entry(w).or_default() += 1;
            }
        }
        let listed: BTreeSet<&String> = self.listing_subject.values().collect();
        let unlisted: Vec<String> = self
            .profile
            .sell
            .iter()
            .filter(|i| !listed.contains(&i.item_id) && !sold.contains(&i.item_id))
            .map(|i| i.item_id.clone())
            .collect();
        let unmet_wants: Vec<String> = self
            .profile
            .want
            .iter()
            .filter(|w| bought.get(&w.want_id).copied().unwrap_or(0) < w.quantity)
            .map(|w| w.want_id.clone())
            .collect();

        (sold, unlisted, unmet_wants)
    }

    /// The open threads the agent is party to, each with its listing, role and subject; a thread
    /// is read again only when a new event names it.
    async fn open_threads(
        &mut self,
        me: i64,
        my_listings: &[Listing],
        new_events: &[Event],
    ) -> Result<Vec<ThreadState>, ClientError> {
        let mut threads = Vec::new();
        let mut thread_list = self.thread_list().await?;
        // The view lists threads in id order, as brains have always seen them, so no brain's
        // decisions depend on the list's activity order.
        thread_list.sort_by_key(|i| i.thread.id);
        // Every change to a thread appends an event its parties see, so only threads named by new
        // events (or never read) need reading again.
        let touched: BTreeSet<i64> = new_events
            .iter()
            .filter_map(|e| e.body.thread_id())
            .collect();
        let mut seller_records = BTreeMap::new();
        for item in thread_list
            .iter()
            .filter(|i| i.thread.status == ThreadStatus::Open)
        {
            let t = &item.thread;
            let mut view = match self.thread_cache.get(&t.id) {
                Some(v) if !touched.contains(&t.id) => v.clone(),
                _ => {
                    let v = self.client.thread(t.id).await?;
                    self.thread_cache.insert(t.id, v.clone());
                    v
                }
            };
            // A cached read's summary is as old as the read (time left, an offer's expiry): the
            // list's, computed now for this agent, replaces it.
            view.summary = item.summary.clone();
            let listing = self.thread_listing(t.listing_id, my_listings).await?;
            let role = if listing.buyer_with(t.counterparty) == me {
                Role::Buyer
            } else {
                Role::Seller
            };
            let subject = self.thread_subject.get(&t.id).cloned().or_else(|| {
                // A thread others opened on my listing is about that listing's item or want.
                (listing.owner == me)
                    .then(|| self.listing_subject.get(&listing.id).cloned())
                    .flatten()
            });
            if let Some(s) = &subject {
                self.thread_subject.entry(t.id).or_insert_with(|| s.clone());
            }
            let turns = *self.thread_turns.entry(t.id).or_default();
            let seller = listing.seller_with(t.counterparty);
            let seller_record = match (role, self.hide_reputation) {
                (Role::Buyer, false) => Some(self.reputation(seller, &mut seller_records).await?),
                _ => None,
            };
            threads.push(ThreadState {
                thread: view,
                listing,
                role,
                subject,
                turns,
                seller_record,
            });
        }
        for i in &thread_list {
            self.contacted.insert(i.thread.listing_id);
        }
        Ok(threads)
    }

    /// Every thread the agent is party to (at most 20 pages).
    async fn thread_list(&mut self) -> Result<Vec<haggle_api::ThreadItem>, ClientError> {
        let mut thread_list = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let page = self
                .client
                .threads(ThreadFilter::default(), cursor.as_deref(), 500)
                .await?;
            thread_list.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(thread_list)
    }

    /// Keeps the candidates and leads this turn contacted, as its searches showed them; the
    /// others go with the view: a search result is read again when it comes up again, and only a
    /// contacted listing (or the agent's own) can be a thread's listing. Every result of every
    /// search, kept, and every closed thread's view were ~150 KB per participant of a
    /// 2,000-participant simulation; copying each result into the cache as it arrived (and
    /// dropping most at the turn's end) was one more `Listing` clone per search result.
    fn keep_contacted(&mut self, view: &View) {
        for c in view.candidates.iter().chain(&view.buyer_leads) {
            let l = &c.listing.listing;
            if self.contacted.contains(&l.id) {
                self.listing_cache.insert(l.id, l.clone());
            }
        }
    }

    /// A thread's listing: the agent's own, or one read before, or read now.
    async fn thread_listing(
        &mut self,
        id: i64,
        my_listings: &[Listing],
    ) -> Result<Listing, ClientError> {
        if let Some(l) = my_listings.iter().find(|l| l.id == id) {
            return Ok(l.clone());
        }
        if let Some(l) = self.listing_cache.get(&id) {
            return Ok(l.clone());
        }
        let l = self.client.listing(id).await?.listing;
        self.listing_cache.insert(l.id, l.clone());
        Ok(l)
    }

    /// A participant's reputation, read once per turn (blank when reputations are hidden).
    async fn reputation(
        &self,
        owner: i64,
        reputations: &mut BTreeMap<i64, Reputation>,
    ) -> Result<Reputation, ClientError> {
        if let Some(r) = reputations.get(&owner) {
            return Ok(r.clone());
        }
        let r = if self.hide_reputation {
            Reputation {
                participant_id: owner,
                ..Default::default()
            }
        } else {
            self.client.reputation(owner).await?
        };
        reputations.insert(owner, r.clone());
        Ok(r)
    }

    /// Listings for sale that may meet an unmet want, not yet contacted.
    async fn candidates(
        &mut self,
        me: i64,
        unmet_wants: &[String],
        reputations: &mut BTreeMap<i64, Reputation>,
    ) -> Result<Vec<Candidate>, ClientError> {
        let mut candidates = Vec::new();
        for w in self
            .profile
            .want
            .iter()
            .filter(|w| unmet_wants.contains(&w.want_id))
        {
            let q = ListingQuery {
                // Keywords are stems: `bike*` also finds "bikes" (search matches whole
                // words, and a starred word the words beginning with it).
                q: (!w.keywords.is_empty()).then(|| {
                    w.keywords
                        .iter()
                        .flat_map(|k| k.split_whitespace())
                        .map(|k| format!("{k}*"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                category: Some(w.category.clone()),
                side: Some(Side::Sell),
                max_price: Some(w.max_price.saturating_mul(2)),
                sort: Some(ListingSort::Cheapest),
                limit: Some(10),
                ..Default::default()
            };
            for l in self.client.search(&q).await?.items {
                let same_type = l
                    .attributes
                    .get("item_type")
                    .is_none_or(|t| *t == w.item_type);
                if l.owner != me && same_type && !self.contacted.contains(&l.id) {
                    let owner_reputation = self.reputation(l.owner, reputations).await?;
                    candidates.push(Candidate {
                        want_id: w.want_id.clone(),
                        listing: haggle_api::ListingView {
                            listing: l,
                            owner_reputation,
                        },
                    });
                }
            }
        }
        Ok(candidates)
    }

    /// Wanted ads an unsold item may meet, not yet contacted.
    async fn buyer_leads(
        &mut self,
        me: i64,
        sold: &BTreeSet<String>,
        reputations: &mut BTreeMap<i64, Reputation>,
    ) -> Result<Vec<Candidate>, ClientError> {
        let mut buyer_leads = Vec::new();
        let unsold: Vec<&crate::profile::SellItem> = self
            .profile
            .sell
            .iter()
            .filter(|i| !sold.contains(&i.item_id))
            .collect();
        let categories: BTreeSet<&str> = unsold.iter().map(|i| i.category.as_str()).collect();
        for cat in categories {
            let q = ListingQuery {
                category: Some(cat.to_string()),
                side: Some(Side::Buy),
                limit: Some(20),
                ..Default::default()
            };
            for l in self.client.search(&q).await?.items {
                if l.owner == me || self.contacted.contains(&l.id) {
                    continue;
                }
                let wanted_type = l.attributes.get("item_type");
                if let Some(item) = unsold.iter().find(|i| {
                    wanted_type.is_none_or(|t| *t == i.item_type) && i.category == l.category
                }) {
                    let owner_reputation = self.reputation(l.owner, reputations).await?;
                    buyer_leads.push(Candidate {
                        want_id: item.item_id.clone(),
                        listing: haggle_api::ListingView {
                            listing: l,
                            owner_reputation,
                        },
                    });
                }
            }
        }
        Ok(buyer_leads)
    }

    /// The market's session ended (repeated markets): the brain's note for the next session
    /// (LLM brains; `None` for rule brains).
    pub async fn end_session(&mut self, session: u32, outcome: &str) -> Option<String> {
        self.brain
            .end_session(&self.profile, session, outcome)
            .await
    }

    /// The next session of the same market: the participant trades its new items and wants
    /// (`profile`, same name); listings and threads of earlier sessions stay in the agent's
    /// books (their item and want ids differ), and the brain reads its note (`memory`).
    pub fn next_session(&mut self, profile: Profile, session: u32, memory: Option<&str>) {
        self.private = PrivateNumbers::of(&profile);
        self.profile = profile;
        self.pending = true;
        self.awake = true;
        self.brain.start_session(session, memory);
    }

    /// Makes the next turn look at the market even without news (time-driven work: the clock
    /// moved past a deadline).
    pub fn wake(&mut self) {
        self.awake = true;
    }

    /// Whether something visible to the agent happened since its last turn (event-driven wake-up).
    pub async fn has_news(&mut self) -> bool {
        if !self.news {
            self.news = self
                .client
                .events(self.last_seq, 1, true)
                .await
                .map(|p| !p.events.is_empty())
                .unwrap_or(true);
        }
        self.news
    }

    /// Actions that were not refused, over the agent's life.
    pub fn successful_actions(&self) -> u64 {
        self.stats
            .actions
            .saturating_sub(self.stats.refusals.values().sum())
    }

    /// One turn: observe, decide, act. Returns the actions taken (refused ones included).
    pub async fn turn(&mut self, now: i64, round: u64) -> Vec<Action> {
        // Reading the market and acting on it hold the market; an LLM brain lets go of it while
        // its model thinks (`ToolBox::release_market`).
        let hold = self.enter_market().await;
        self.stats.turns += 1;
        // An outside participant's turn holds the market throughout, so what it does is the only
        // thing that happens to the market meanwhile (and a replay applies it at the same point).
        if let Some(turn) = self.brain.outside_turn(round) {
            self.stats.actions += turn.await;
            drop(hold);
            self.turns += 1;
            return Vec::new();
        }
        // Rule brains act on news or on search results; with neither, the turn would repeat the
        // last decision to do nothing, so it is skipped without reading the whole market.
        let search_due = self.turns.is_multiple_of(SEARCH_EVERY) && self.pending;
        let awake = std::mem::take(&mut self.awake);
        if self.synced && !search_due && !awake && !self.has_news().await {
            self.turns += 1;
            return Vec::new();
        }
        let view = match self.observe(now, round).await {
            Ok(v) => v,
            Err(e) => {
                self.refused(&e);
                self.turns += 1;
                return Vec::new();
            }
        };
        self.pending = !view.unlisted.is_empty()
            || !view.unmet_wants.is_empty()
            || view.deals.iter().any(|d| !d.is_finished());
        self.housekeeping(&view).await;
        let leads: BTreeMap<i64, String> = view
            .candidates
            .iter()
            .chain(view.buyer_leads.iter())
            .map(|c| (c.listing.listing.id, c.want_id.clone()))
            .collect();
        let mut tools = TurnTools {
            client: &self.client,
            private: &self.private,
            withhold_leaks: self.withhold_leaks,
            stats: &mut self.stats,
            listing_subject: &mut self.listing_subject,
            thread_subject: &mut self.thread_subject,
            contacted: &mut self.contacted,
            leads: &leads,
            market: self.market.as_ref(),
            hold,
            agent: &self.profile.name,
        };
        let mut actions = self.brain.turn(&self.profile, &view, &mut tools).await;
        let mut hold = tools.hold.take();
        // A wanted ad only for a want still unmet, whatever the brain asks.
        actions.retain(|a| match a {
            Action::PostWanted { want_id, .. } => view.unmet_wants.contains(want_id),
            _ => true,
        });
        actions.truncate(MAX_ACTIONS_PER_TURN);
        if !actions.is_empty() && hold.is_none() {
            hold = self.enter_market().await;
        }
        for t in &view.threads {
            *self
                .thread_turns
                .entry(t.thread.detail.thread.id)
                .or_default() += 1;
        }
        for a in &actions {
            if outgoing_text(a).is_some_and(|t| self.leak_check(t)) {
                continue;
            }
            self.stats.actions += 1;
            match self.act(a, &leads).await {
                Ok(()) => self.applied(),
                Err(e) => {
                    tracing::debug!(agent = %self.profile.name, action = ?a, error = %e, "action refused");
                    self.refused(&e);
                }
            }
        }
        drop(hold);
        self.keep_contacted(&view);
        self.turns += 1;
        actions
    }

    /// Keeps the market consistent with what is already sold or bought: an item sold through one
    /// listing or thread is withdrawn elsewhere; a want that is met ends its other negotiations.
    async fn housekeeping(&mut self, view: &View) {
        let me = view.me;
        let done_items: BTreeSet<String> = view
            .deals
            .iter()
            .filter(|d| d.seller == me && counts(d))
            .filter_map(|d| {
                self.thread_subject
                    .get(&d.thread_id)
                    .cloned()
                    .or_else(|| d.snapshot.attributes.get("item_id").cloned())
            })
            .collect();
        let met: BTreeSet<String> = self
            .profile
            .want
            .iter()
            .filter(|w| !view.unmet_wants.contains(&w.want_id))
            .map(|w| w.want_id.clone())
            .collect();
        for l in view
            .my_listings
            .iter()
            .filter(|l| l.status == ListingStatus::Active)
        {
            let subject = self.listing_subject.get(&l.id).cloned();
            if subject.is_some_and(|s| done_items.contains(&s) || met.contains(&s))
                && let Err(e) = self.client.withdraw_listing(l.id).await
            {
                self.refused(&e);
            }
        }
        for t in &view.threads {
            let subject = t.subject.as_ref();
            let own_listing = t.listing.owner == me;
            if subject.is_some_and(|s| (done_items.contains(s) || met.contains(s)) && !own_listing)
                && let Err(e) = self.client.walk_away(t.thread.detail.thread.id).await
            {
                self.refused(&e);
            }
        }
    }

    /// Lists an item of the profile for sale.
    async fn list_item(&mut self, item_id: &str, price: i64) -> Result<(), ClientError> {
        let item = self
            .profile
            .sell
            .iter()
            .find(|i| i.item_id == item_id)
            .ok_or_else(|| ClientError::transport(format!("no item {item_id} in the profile")))?;
        let l: Listing = self
            .client
            .create_listing(&item_listing(item, price))
            .await?;
        self.listing_subject.insert(l.id, item_id.to_string());
        Ok(())
    }

    /// Posts a wanted ad for a want of the profile.
    async fn post_wanted(&mut self, want_id: &str, price: i64) -> Result<(), ClientError> {
        let w = self
            .profile
            .want
            .iter()
            .find(|w| w.want_id == want_id)
            .ok_or_else(|| ClientError::transport(format!("no want {want_id} in the profile")))?;
        let l = self
            .client
            .create_listing(&wanted_listing(w, price))
            .await?;
        self.listing_subject.insert(l.id, want_id.to_string());
        Ok(())
    }

    /// Opens a thread on a listing (contacted from now on); a lead's subject becomes the
    /// thread's.
    async fn open_thread(
        &mut self,
        listing_id: i64,
        req: &OpenThread,
        leads: &BTreeMap<i64, String>,
    ) -> Result<(), ClientError> {
        self.contacted.insert(listing_id);
        let opened = self.client.open_thread(listing_id, req).await?;
        if let Some(s) = leads.get(&listing_id) {
            self.thread_subject.insert(opened.thread.id, s.clone());
        }
        Ok(())
    }

    async fn act(&mut self, a: &Action, leads: &BTreeMap<i64, String>) -> Result<(), ClientError> {
        let c = &self.client;
        match a {
            Action::ListItem { item_id, price } => self.list_item(item_id, *price).await?,
            Action::PostWanted { want_id, price } => self.post_wanted(want_id, *price).await?,
            Action::WithdrawListing { listing_id } => {
                c.withdraw_listing(*listing_id).await?;
            }
            Action::OpenThread {
                listing_id,
                message,
                price,
            } => {
                let req = OpenThread {
                    message: message.clone(),
                    price: *price,
                    expires_in_ms: None,
                };
                self.open_thread(*listing_id, &req, leads).await?;
            }
            Action::Message { thread_id, body } => {
                c.post_message(*thread_id, body).await?;
            }
            Action::Offer { thread_id, price } => {
                c.make_offer(
                    *thread_id,
                    &MakeOffer {
                        price: *price,
                        expires_in_ms: None,
                    },
                )
                .await?;
            }
            Action::Accept { offer_id } => {
                c.accept(*offer_id).await?;
            }
            Action::Reject { offer_id } => {
                c.reject(*offer_id).await?;
            }
            Action::WithdrawOffer { offer_id } => {
                c.withdraw_offer(*offer_id).await?;
            }
            Action::WalkAway { thread_id } => {
                c.walk_away(*thread_id).await?;
            }
            Action::HandOver { deal_id, note } => {
                c.hand_over(*deal_id, note.as_deref()).await?;
            }
            Action::Ship {
                deal_id,
                carrier,
                tracking,
            } => {
                c.ship(*deal_id, carrier, tracking).await?;
            }
            Action::ConfirmReceipt { deal_id } => {
                c.confirm_receipt(*deal_id).await?;
            }
            Action::CancelDeal { deal_id } => {
                c.cancel_deal(*deal_id, None).await?;
            }
            Action::Dispute {
                deal_id,
                reason,
                grounds,
                claims,
            } => {
                let req = haggle_api::OpenDispute {
                    reason: reason.clone(),
                    grounds: *grounds,
                    claims: claims.clone(),
                };
                c.open_dispute(*deal_id, &req).await?;
            }
            Action::Rate {
                deal_id,
                score,
                comment,
            } => {
                c.rate(*deal_id, *score, comment).await?;
            }
        }
        Ok(())
    }
}

/// The text an action sends to another party, if any.
fn outgoing_text(a: &Action) -> Option<&str> {
    match a {
        Action::OpenThread { message, .. } => message.as_deref(),
        Action::Message { body, .. } => Some(body),
        Action::HandOver { note, .. } => note.as_deref(),
        Action::Dispute { reason, .. } => Some(reason),
        Action::Rate { comment, .. } => Some(comment),
        _ => None,
    }
}

/// Every string inside a tool's arguments (what a writing tool sends to the market), except the
/// profile's own ids (`bike-45` names an item, it does not say a price).
fn strings_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        serde_json::Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "item_id" | "want_id"))
            .for_each(|(_, x)| strings_in(x, out)),
        _ => {}
    }
}

/// The tools of one turn: the shared catalogue run with the agent's client, with the runtime's
/// bookkeeping (which listing or thread stands for which profile item or want) and leak checks.
struct TurnTools<'a, C: MarketClient> {
    client: &'a C,
    private: &'a PrivateNumbers,
    withhold_leaks: bool,
    stats: &'a mut AgentStats,
    listing_subject: &'a mut BTreeMap<i64, String>,
    thread_subject: &'a mut BTreeMap<i64, String>,
    contacted: &'a mut BTreeSet<i64>,
    leads: &'a BTreeMap<i64, String>,
    /// The market's gate, the hold on it (none while the brain waits for its model), and who
    /// holds it.
    market: Option<&'a Arc<Sequencer>>,
    hold: Option<MarketHold>,
    agent: &'a str,
}

/// Why an outgoing text was not sent (it never reached the market, hence status 0).
fn withheld() -> ToolError {
    ToolError {
        status: 0,
        body: ErrorBody::new(
            haggle_api::ErrorCode::Forbidden,
            "withheld by your runtime: the text contains one of your private numbers (a lowest \
             price, a maximum price or your budget); nothing was sent. Rewrite it without them.",
        ),
    }
}

impl<C: MarketClient> TurnTools<'_, C> {
    /// Learns from a successful call what the rule path learns from its actions.
    fn note(&mut self, name: &str, args: &serde_json::Value, result: &serde_json::Value) {
        match name {
            "post_listing" | "post_wanted" => {
                let attrs = &result["attributes"];
                let subject = attrs["item_id"].as_str().or(attrs["want_id"].as_str());
                if let (Some(id), Some(s)) = (result["id"].as_i64(), subject) {
                    self.listing_subject.insert(id, s.to_string());
                }
            }
            "make_offer" | "send_message" => {
                if let Some(l) = args["listing_id"].as_i64() {
                    self.contacted.insert(l);
                    let thread = result["thread"]["id"]
                        .as_i64()
                        .or(result["thread_id"].as_i64());
                    if let (Some(t), Some(s)) = (thread, self.leads.get(&l)) {
                        self.thread_subject.insert(t, s.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

impl<C: MarketClient> ToolBox for TurnTools<'_, C> {
    fn call<'a>(
        &'a mut self,
        name: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, ToolError>> {
        Box::pin(async move {
            self.stats.tool_calls += 1;
            let writes = tools::find(name).is_some_and(|t| !t.annotations.read_only);
            if writes {
                let mut texts = Vec::new();
                strings_in(&args, &mut texts);
                if texts.iter().any(|t| self.private.found_in(t).is_some()) {
                    self.stats.leaks += 1;
                    if self.withhold_leaks {
                        self.stats.leaks_withheld += 1;
                        return Err(withheld());
                    }
                }
                self.stats.actions += 1;
            }
            if let (Some(seq), None) = (self.market, &self.hold) {
                self.hold = Some(seq.enter(self.agent).await);
            }
            let result = tools::call(self.client, name, args.clone()).await;
            match &result {
                Ok(v) => {
                    self.note(name, &args, v);
                    if let (true, Some(seq)) = (writes, self.market) {
                        seq.acted(self.agent);
                    }
                }
                Err(e) if writes => {
                    *self
                        .stats
                        .refusals
                        .entry(e.code().as_str().to_string())
                        .or_default() += 1;
                }
                Err(_) => {}
            }
            result
        })
    }

    fn release_market(&mut self) {
        self.hold = None;
    }
}

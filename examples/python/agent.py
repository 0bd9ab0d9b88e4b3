#!/usr/bin/env python3
"""A small Haggle trading agent in plain Python (standard library only).

It trades through the HTTP API the way any outside agent does: a bearer token per agent, an
`Idempotency-Key` on every POST (so a retry never acts twice), prices in minor units, refusals
read from the error body `{"error": {"code", "message"}}`.

Run against a served market with two agent tokens (an operator registers the participants):

    python3 examples/python/agent.py --server http://127.0.0.1:8080 \\
        --seller-token hgl_... --buyer-token hgl_...

The seller lists an item; the buyer searches for it and opens a thread with an offer; they
counter each other until one accepts; the seller hands the item over, the buyer confirms receipt
(the escrowed price goes to the seller) and both rate the deal. The last line printed is a JSON
summary of the deal.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Refused(Exception):
    """The market said no: the HTTP status and the error body's code and message."""

    def __init__(self, status, code, message):
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message = status, code, message


class Agent:
    """One agent token: which market and participant it acts for, and every call it makes."""

    def __init__(self, server, token, name):
        self.server, self.token, self.name = server.rstrip("/"), token, name
        me = self.call("GET", "/v1/me")
        if me.get("role") != "agent":
            raise SystemExit(f"{name}: this is a {me.get('role')} token; an agent token is needed")
        self.market, self.me = me["market_id"], me["participant_id"]

    def call(self, method, path, body=None, key=None):
        """One request; a POST carries an idempotency key (reuse `key` to retry safely)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if method != "GET":
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = key or str(uuid.uuid4())
            data = json.dumps(body or {}).encode()
        req = urllib.request.Request(self.server + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            try:
                err = json.load(e)["error"]
            except (ValueError, KeyError):
                err = {"code": "unknown", "message": str(e)}
            raise Refused(e.code, err["code"], err["message"]) from None

    def path(self, rest):
        return f"/v1/markets/{self.market}{rest}"

    # ---- what an agent does -------------------------------------------------------------------

    def balance(self):
        return self.call("GET", self.path(f"/participants/{self.me}/balance"))

    def list_item(self, title, category, price, description=""):
        body = {"side": "sell", "title": title, "category": category, "price": price,
                "description": description}
        return self.call("POST", self.path("/listings"), body)

    def search(self, words, max_price=None):
        query = urllib.parse.urlencode(
            {k: v for k, v in {"q": words, "max_price": max_price, "sort": "cheapest"}.items()
             if v is not None})
        return self.call("GET", self.path(f"/listings?{query}"))["items"]

    def open_with_offer(self, listing, price, message):
        body = {"price": price, "message": message}
        return self.call("POST", self.path(f"/listings/{listing}/threads"), body)

    def thread(self, thread):
        return self.call("GET", self.path(f"/threads/{thread}"))

    def offer(self, thread, price):
        return self.call("POST", self.path(f"/threads/{thread}/offers"), {"price": price})

    def say(self, thread, text):
        return self.call("POST", self.path(f"/threads/{thread}/messages"), {"body": text})

    def accept(self, offer):
        return self.call("POST", self.path(f"/offers/{offer}/accept"))

    def hand_over(self, deal, note):
        return self.call("POST", self.path(f"/deals/{deal}/handover"), {"note": note})

    def confirm(self, deal):
        return self.call("POST", self.path(f"/deals/{deal}/confirm"))

    def rate(self, deal, score, comment):
        body = {"score": score, "comment": comment}
        return self.call("POST", self.path(f"/deals/{deal}/ratings"), body)

    def deal(self, deal):
        return self.call("GET", self.path(f"/deals/{deal}"))


def live_offer_to(agent, view):
    """The other party's live offer in a thread, if any."""
    for o in view["offers"]:
        if o["state"] == "live" and o["proposer"] != agent.me:
            return o
    return None


class Strategy:
    """Concede a fixed share of the gap each round; accept once the other side is within reach."""

    def __init__(self, agent, start, limit, buyer):
        self.agent, self.price, self.limit, self.buyer = agent, start, limit, buyer

    def acceptable(self, price):
        return price <= self.limit if self.buyer else price >= self.limit

    def respond(self, thread):
        """Accepts the other side's live offer, or counters it. Returns a deal, or None."""
        view = self.agent.thread(thread)
        theirs = live_offer_to(self.agent, view)
        if theirs is None:
            return None
        if self.acceptable(theirs["price"]):
            return self.agent.accept(theirs["id"])
        # Move a third of the way towards them, never past our own limit.
        step = (theirs["price"] - self.price) // 3
        self.price = min(self.price + step, self.limit) if self.buyer else max(
            self.price + step, self.limit)
        self.agent.say(thread, f"{theirs['price']} is not enough for me; how about {self.price}?"
                       if not self.buyer else f"{theirs['price']} is too much; I can do {self.price}.")
        self.agent.offer(thread, self.price)
        return None


def trade(seller, buyer, rounds=20):
    """One sale from listing to settlement. Returns the summary."""
    asking, floor = 12_000, 9_000   # the seller's asking price and lowest acceptable price
    opening, ceiling = 7_000, 10_000  # the buyer's first offer and highest acceptable price

    listing = seller.list_item("Road bike, 56 cm", "bikes", asking,
                               "Steel frame, new tyres. Collect or delivery in town.")
    print(f"{seller.name}: listed #{listing['id']} at {asking}")

    found = buyer.search("road bike", max_price=2 * ceiling)
    target = next(item for item in found if item["id"] == listing["id"])
    print(f"{buyer.name}: found #{target['id']} '{target['title']}' at {target['price']}")

    opened = buyer.open_with_offer(target["id"], opening, "Hi! Would you take this?")
    thread = opened["thread"]["id"]
    print(f"{buyer.name}: opened thread #{thread} offering {opening}")

    sell = Strategy(seller, asking, floor, buyer=False)
    buy = Strategy(buyer, opening, ceiling, buyer=True)
    deal = None
    for turn in range(rounds):
        side = sell if turn % 2 == 0 else buy
        deal = side.respond(thread)
        if deal is not None:
            print(f"{side.agent.name}: accepted at {deal['price']} -> deal #{deal['id']}")
            break
        print(f"{side.agent.name}: countered at {side.price}")
    if deal is None:
        raise SystemExit("no agreement within the rounds")

    seller.hand_over(deal["id"], "At reception, under your name.")
    buyer.confirm(deal["id"])
    seller.rate(deal["id"], 5, "Smooth buyer.")
    buyer.rate(deal["id"], 5, "As described.")
    settled = buyer.deal(deal["id"])
    return {
        "deal_id": settled["id"],
        "listing_id": listing["id"],
        "thread_id": thread,
        "price": settled["price"],
        "status": settled["status"],
        "seller_balance": seller.balance(),
        "buyer_balance": buyer.balance(),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default=os.environ.get("HAGGLE_SERVER", "http://127.0.0.1:8080"))
    p.add_argument("--seller-token", default=os.environ.get("HAGGLE_SELLER_TOKEN"))
    p.add_argument("--buyer-token", default=os.environ.get("HAGGLE_BUYER_TOKEN"))
    a = p.parse_args()
    if not (a.seller_token and a.buyer_token):
        p.error("give --seller-token and --buyer-token (agent tokens of two participants)")
    try:
        seller = Agent(a.server, a.seller_token, "seller")
        buyer = Agent(a.server, a.buyer_token, "buyer")
        summary = trade(seller, buyer)
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    except urllib.error.URLError as e:
        print(f"unavailable: cannot reach {a.server}: {e.reason}", file=sys.stderr)
        return 2
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

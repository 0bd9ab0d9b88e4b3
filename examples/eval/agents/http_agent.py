#!/usr/bin/env python3
"""A small trading agent for `haggle eval --agent`, over the HTTP API (standard library only).

    haggle eval --agent "python3 examples/eval/agents/http_agent.py"

Haggle runs it once per market with HAGGLE_URL, HAGGLE_MARKET, HAGGLE_AGENT_TOKEN and
HAGGLE_PROFILE (its principal's profile as JSON, private numbers included) in its environment.
It waits for `turn_started` on its feed and in each turn: lists its items at their asking price
(first turn), answers the offers waiting for it (a seller takes the midpoint of ask and floor or
better, a buyer pays up to 90% of its maximum), hands over what it sold, confirms what it got,
rates finished deals, and bids on the cheapest listing for each unmet want; then ends the turn.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

URL, MARKET = os.environ["HAGGLE_URL"], os.environ["HAGGLE_MARKET"]
TOKEN = os.environ["HAGGLE_AGENT_TOKEN"]
PROFILE = json.load(open(os.environ["HAGGLE_PROFILE"]))


def call(method, path, body=None):
    """One request; (status, JSON). The run is over when the server is gone."""
    headers = {"Authorization": "Bearer " + TOKEN, "Accept": "application/json"}
    data = None
    if method != "GET":
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = str(uuid.uuid4())
        data = json.dumps(body or {}).encode()
    req = urllib.request.Request(URL + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError:
        sys.exit(0)


def market(rest):
    return f"/v1/markets/{MARKET}{rest}"


ME = call("GET", "/v1/me")[1]["participant_id"]
ITEMS = {}  # my listing id -> profile item
WANTS = {w["want_id"]: w for w in PROFILE.get("want", [])}
BIDS = {}  # thread id -> want id
MET, CONTACTED, RATED = set(), set(), set()


def list_items():
    for item in PROFILE.get("sell", []):
        body = {"side": "sell", "title": item["title"], "category": item["category"],
                "price": item["asking_price"], "description": item.get("description", ""),
                "condition": item.get("condition", "")}
        status, listing = call("POST", market("/listings"), body)
        if status == 201:
            ITEMS[listing["id"]] = item


def answer_offers():
    status, page = call("GET", market("/threads?your_move=true&status=open"))
    for t in page.get("items", []) if status == 200 else []:
        live = t["summary"].get("live_offer")
        if not live or live["by"] == ME:
            continue
        price = live["price"]
        if t["listing_id"] in ITEMS:
            item = ITEMS[t["listing_id"]]
            target = (item["asking_price"] + item["floor_price"]) // 2
            if price >= target:
                call("POST", market(f"/offers/{live['offer_id']}/accept"))
            else:
                call("POST", market(f"/threads/{t['id']}/offers"), {"price": target})
        elif t["id"] in BIDS:
            want = WANTS[BIDS[t["id"]]]
            limit = want["max_price"] * 9 // 10
            if BIDS[t["id"]] in MET:
                call("POST", market(f"/threads/{t['id']}/walk-away"))
            elif price <= limit:
                if call("POST", market(f"/offers/{live['offer_id']}/accept"))[0] == 200:
                    MET.add(BIDS[t["id"]])
            else:
                call("POST", market(f"/threads/{t['id']}/offers"), {"price": limit})


def settle():
    status, page = call("GET", market("/deals?limit=100"))
    for d in page.get("items", []) if status == 200 else []:
        if d["seller"] == ME and d["status"] == "agreed":
            call("POST", market(f"/deals/{d['id']}/handover"), {"note": "Handed over."})
        if d["buyer"] == ME and d["status"] == "handed_over":
            call("POST", market(f"/deals/{d['id']}/confirm"))
        if d["status"] in ("completed", "refunded", "partially_refunded") and d["id"] not in RATED:
            if call("POST", market(f"/deals/{d['id']}/ratings"),
                    {"score": 5, "comment": "Fine."})[0] in (200, 201):
                RATED.add(d["id"])


def bid():
    busy = set(BIDS.values())
    for want in WANTS.values():
        if want["want_id"] in MET or want["want_id"] in busy:
            continue
        q = urllib.parse.urlencode({"q": " ".join(want.get("keywords", [])) or want["item_type"],
                                    "side": "sell", "category": want["category"],
                                    "sort": "cheapest", "limit": 10})
        status, page = call("GET", market(f"/listings?{q}"))
        for listing in page.get("items", []) if status == 200 else []:
            if listing["owner"] == ME or listing["id"] in CONTACTED:
                continue
            CONTACTED.add(listing["id"])
            price = min(listing["price"], want["max_price"] * 7 // 10)
            status, opened = call("POST", market(f"/listings/{listing['id']}/threads"),
                                  {"price": price, "message": "Hello, interested."})
            if status == 201:
                BIDS[opened["thread"]["id"]] = want["want_id"]
                break


def main():
    after, turns = 0, 0
    while True:
        status, page = call("GET", market(f"/events?mine=true&after={after}"))
        for e in page.get("events", []) if status == 200 else []:
            after = e["seq"]
            if e["kind"] != "turn_started":
                continue
            turns += 1
            if turns == 1:
                list_items()
            answer_offers()
            settle()
            bid()
            call("POST", market(f"/turns/{e['payload']['turn']}/end"), {})
        time.sleep(0.02)


main()

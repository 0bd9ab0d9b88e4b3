#!/usr/bin/env python3
"""A small MCP client agent for `haggle eval --mcp-agent` (standard library only).

    haggle eval --mcp-agent "python3 examples/eval/agents/mcp_agent.py"

It starts the MCP server Haggle names in HAGGLE_MCP_COMMAND (`haggle mcp`, which reads
HAGGLE_SERVER and HAGGLE_AGENT_TOKEN) and talks JSON-RPC to it over stdin/stdout: the MCP
handshake, then `tools/call`. It reads its profile from HAGGLE_PROFILE, polls `events_since` for
`turn_started`, and in each turn lists its items at their asking price (first turn), takes offers
at its asking price or better, hands over what it sold, confirms what it got, bids the asking
price for each unmet want when that is within its maximum, and calls `end_turn`.
"""

import json
import os
import subprocess
import sys
import time

PROFILE = json.load(open(os.environ["HAGGLE_PROFILE"]))
SERVER = subprocess.Popen(os.environ["HAGGLE_MCP_COMMAND"], shell=True, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
NEXT_ID = [0]


def rpc(method, params, notify=False):
    """One JSON-RPC request (or notification) on the server's stdin; its answer from stdout."""
    msg = {"jsonrpc": "2.0", "method": method, "params": params}
    if not notify:
        NEXT_ID[0] += 1
        msg["id"] = NEXT_ID[0]
    try:
        SERVER.stdin.write(json.dumps(msg) + "\n")
        SERVER.stdin.flush()
    except BrokenPipeError:
        sys.exit(0)
    if notify:
        return None
    while True:
        line = SERVER.stdout.readline()
        if not line:
            sys.exit(0)  # the server ended: so did the run
        answer = json.loads(line)
        if answer.get("id") == msg["id"]:
            return answer


def tool(name, **args):
    """A tool's structured result, or None when the market refused it."""
    answer = rpc("tools/call", {"name": name, "arguments": args})
    result = answer.get("result") or {}
    if result.get("isError") or "error" in answer:
        return None
    if "structuredContent" in result:
        return result["structuredContent"]
    return json.loads(result["content"][0]["text"])


rpc("initialize", {"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "haggle-eval-mcp-agent", "version": "1"}})
rpc("notifications/initialized", {}, notify=True)

ITEMS, BOUGHT, ASKED, RATED = {}, set(), set(), set()
ME = (tool("my_balance") or {}).get("participant_id")


def turn(first):
    if first:
        for item in PROFILE.get("sell", []):
            listing = tool("post_listing", title=item["title"], category=item["category"],
                           price=item["asking_price"], description=item.get("description", ""))
            if listing:
                ITEMS[listing["id"]] = item
    threads = tool("my_threads", your_move=True) or {"items": []}
    for t in threads["items"]:
        live = t["summary"].get("live_offer")
        if live and t["listing_id"] in ITEMS and live["price"] >= ITEMS[t["listing_id"]]["asking_price"]:
            tool("accept_offer", offer_id=live["offer_id"])
    deals = tool("my_deals") or {"items": []}
    for d in deals["items"]:
        if d["status"] == "agreed" and d["listing_id"] in ITEMS:
            tool("hand_over", deal_id=d["id"])
        if d["status"] == "handed_over" and d["listing_id"] not in ITEMS:
            tool("confirm_receipt", deal_id=d["id"])
        if d["status"] in ("completed", "refunded", "partially_refunded") and d["id"] not in RATED:
            if tool("rate_deal", deal_id=d["id"], score=5, comment="Fine.") is not None:
                RATED.add(d["id"])
        if d["listing_id"] not in ITEMS:
            BOUGHT.add(d["listing_id"])
    for want in PROFILE.get("want", []):
        if want["want_id"] in ASKED:
            continue
        page = tool("search_listings", q=" ".join(want.get("keywords", [])) or want["item_type"],
                    side="sell", category=want["category"]) or {"items": []}
        for listing in page["items"]:
            if listing["price"] <= want["max_price"] and listing["id"] not in ITEMS:
                if tool("make_offer", listing_id=listing["id"], price=listing["price"]):
                    ASKED.add(want["want_id"])
                    break


after, first = 0, True
while True:
    page = tool("events_since", after=after) or {"events": []}
    for e in page.get("events", []):
        after = max(after, e["seq"])
        if e["kind"] == "turn_started":
            turn(first)
            first = False
            tool("end_turn", turn=e["payload"]["turn"])
    after = page.get("next_after") or after
    time.sleep(0.02)

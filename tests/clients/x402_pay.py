"""Pays a GPU-Bridge endpoint with x402's own Python client, unchanged.

Usage: x402_pay.py URL PRIVATE_KEY BODY_JSON

POSTs BODY_JSON to URL through `x402HttpxClient`, which answers the 402 by
signing an `exact` (EIP-3009) payment and retrying. Prints one JSON line:
{"status", "body", "payment_response"} — the last decoded from PAYMENT-RESPONSE.
"""

import asyncio
import base64
import json
import sys

from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.exact import ExactEvmScheme


async def main(url: str, key: str, body: str) -> None:
    client = x402Client()
    client.register("eip155:*", ExactEvmScheme(signer=Account.from_key(key)))
    async with x402HttpxClient(client, timeout=30) as http:
        response = await http.post(url, json=json.loads(body))
    settled = response.headers.get("payment-response")
    print(
        json.dumps(
            {
                "status": response.status_code,
                "body": response.json(),
                "payment_response": json.loads(base64.b64decode(settled)) if settled else None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

"""The official OpenAI Python SDK, unchanged, against GPU-Bridge's /v1 routes:
only base_url and api_key differ from talking to OpenAI. Usage:

    openai_sdk.py BASE_URL API_KEY CHAT_MODEL EMBEDDING_MODEL EXPECTED_STREAM_TEXT

Prints what it saw as JSON; any exception fails the run.
"""

import json
import sys

import openai

base_url, api_key, chat_model, embedding_model, expected = sys.argv[1:6]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
seen = {}

models = [m.id for m in client.models.list()]
assert chat_model in models, models
seen["models"] = len(models)

whole = client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "hi"}], max_tokens=16
)
assert whole.choices[0].message.role == "assistant"
assert "hi" in whole.choices[0].message.content, whole
seen["chat"] = whole.choices[0].message.content

text, usage = "", None
stream = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        text += choice.delta.content or ""
assert text == expected, (text, expected)
assert usage is not None and usage.completion_tokens > 0, usage
seen["stream"] = text
seen["stream_usage"] = usage.total_tokens

# The SDK asks for base64 by default and decodes it itself.
embeddings = client.embeddings.create(model=embedding_model, input=["a", "bb"])
assert len(embeddings.data) == 2
assert len(embeddings.data[0].embedding) > 0
assert all(isinstance(x, float) for x in embeddings.data[1].embedding)
seen["embedding_dimensions"] = len(embeddings.data[0].embedding)

try:
    client.chat.completions.create(
        model="no-such-model", messages=[{"role": "user", "content": "hi"}]
    )
    raise AssertionError("an unknown model was accepted")
except openai.BadRequestError as error:
    assert error.status_code == 400
    seen["error"] = error.message

try:
    openai.OpenAI(base_url=base_url, api_key="gpub_wrong", max_retries=0).models.list()
    bad_key = None
except openai.AuthenticationError as error:
    bad_key = error.status_code
seen["bad_key"] = bad_key

print(json.dumps(seen))

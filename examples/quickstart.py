"""Chat (plain and streamed) and embed through Sluicegate with the official openai SDK.

export OPENAI_BASE_URL=http://127.0.0.1:8080/v1
export OPENAI_API_KEY=$(cat .sluicegate/master_key)
python examples/quickstart.py
"""

from __future__ import annotations

import openai


def main() -> None:
    client = openai.OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
    reply = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name three rivers in Europe."}],
        max_tokens=64,
    )
    print("chat:", reply.choices[0].message.content)
    print("usage:", reply.usage)

    print("stream: ", end="", flush=True)
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hello in French."}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

    vectors = client.embeddings.create(model="minilm-l6", input=["a river", "a stream"])
    print("embeddings:", len(vectors.data), "x", len(vectors.data[0].embedding))


if __name__ == "__main__":
    main()

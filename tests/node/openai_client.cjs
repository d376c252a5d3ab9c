// Drives a running `kvwise serve` with the official OpenAI client for Node and prints what it saw as
// one JSON object; test_openai_client.cpp checks it against the engine's own greedy output.
// Usage: node openai_client.cjs OPENAI_PACKAGE_DIR BASE_URL API_KEY PROMPT CHAT_PROMPT
'use strict';
const { OpenAI } = require(process.argv[2]);
const [baseURL, apiKey, prompt, chatPrompt] = process.argv.slice(3);

async function status(promise) {
  try {
    await promise;
    return { status: 200 };
  } catch (e) {
    return { status: e.status ?? -1, type: e.constructor.name, message: String(e.message) };
  }
}

async function main() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  const model = out.models[0];

  const c1 = await client.completions.create({ model, prompt, max_tokens: 24, temperature: 0 });
  const c2 = await client.completions.create({ model, prompt, max_tokens: 24, temperature: 0 });
  out.completion = { text: c1.choices[0].text, finish: c1.choices[0].finish_reason, usage: c1.usage };
  out.repeat = { text: c2.choices[0].text, usage: c2.usage };

  let streamed = '';
  let usage = null;
  const stream = await client.completions.create({
    model, prompt, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.choices.length) streamed += chunk.choices[0].text;
    if (chunk.usage) usage = chunk.usage;
  }
  out.stream = { text: streamed, usage };

  const messages = [{ role: 'user', content: chatPrompt }];
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
  out.chat = { text: chat.choices[0].message.content, role: chat.choices[0].message.role, usage: chat.usage };
  let chatStreamed = '';
  const chatStream = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0,
                                                            stream: true });
  for await (const chunk of chatStream) chatStreamed += chunk.choices[0]?.delta?.content ?? '';
  out.chat_stream = chatStreamed;

  // kvwise's request extensions pass through the client as extra body fields.
  const compressed = await client.completions.create({
    model, prompt, max_tokens: 8, temperature: 0, kv_policy: 'streamingllm', kv_budget: 16,
  });
  out.compressed = { finish: compressed.choices[0].finish_reason, tokens: compressed.usage.completion_tokens };

  // Aborting a stream mid-way: the server cancels the request.
  const controller = new AbortController();
  const long = await client.completions.create(
    { model, prompt, max_tokens: 400, temperature: 0, stream: true, ignore_eos: true },
    { signal: controller.signal });
  let pieces = 0;
  let error = null;
  try {
    for await (const chunk of long) {
      void chunk;
      if (++pieces === 3) controller.abort();
    }
  } catch (e) {
    error = e.constructor.name;  // the client may also end the iteration quietly
  }
  out.abort = { pieces, aborted: controller.signal.aborted, error };

  out.errors = {
    bad_policy: await status(client.completions.create({ model, prompt, max_tokens: 4, kv_policy: 'nosuch',
                                                         kv_budget: 0.5 })),
    bad_type: await status(client.completions.create({ model, prompt, max_tokens: 'many' })),
    too_long: await status(client.completions.create({ model, prompt: prompt.repeat(200), max_tokens: 4 })),
    bad_key: await status(new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 }).models.list()),
    no_messages: await status(client.chat.completions.create({ model, messages: [] })),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`openai client failed: ${e.stack || e}\n`);
  process.exit(1);
});

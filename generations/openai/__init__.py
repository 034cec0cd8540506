"""OpenAI's images API under /v1, so the `openai` SDK drives ComfyUI endpoints by changing `base_url`.

`mapping` turns OpenAI parameters into an endpoint's inputs (pure), `images` queues and answers
jobs, `streaming` sends server-sent events, `errors` speaks OpenAI's error shape, `views` and
`urls` are the routes.
"""

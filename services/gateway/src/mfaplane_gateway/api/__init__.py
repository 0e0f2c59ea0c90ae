"""The public /v1 API's routers and the shapes they share: users (users.py), admins and API keys, systems,
enrollment commands, its documentation (api_docs.py, api_examples.py) and versions."""

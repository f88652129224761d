PRESETS: dict[str, dict] = {}

"""DVC stage entry points: read params, call the library, write outputs. No algorithm code."""

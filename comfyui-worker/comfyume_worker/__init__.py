"""The worker's own helpers, standard library only (they run in the image's Python, beside
ComfyUI, and in tests with a plain python3):

- models: the models the workshop needs (models.json, generated from config/models.yml) checked
  against the shared filesystem: present, with the right size.
- state: what the entrypoint and the supervisor tell the /ready route through WORKER_RUNTIME_DIR
  (a warm-up in progress, a shutdown under way).
- ready: the /ready answer, from both.
- supervisor: runs ComfyUI, copies each finished prompt's outputs to R2 with rclone, and on
  SIGTERM drains (no new work, the running job finishes within the grace period, uploads flushed).
"""

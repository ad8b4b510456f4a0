"""Local AWS emulation: moto, an in-process Lambda runtime, and a provisioner for template.yaml.

Never shipped to Lambda. Start here: :class:`erphub_local.aws.stack.LocalStack`.
"""

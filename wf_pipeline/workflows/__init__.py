"""Workflow plug-ins: one package per workflow registers its payload schemas, gates, offline
turns and output sink in one place. The runtime and the domain packages never import this
package; they reach a workflow only through what it registered.
"""

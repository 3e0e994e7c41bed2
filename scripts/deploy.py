"""Deploy a swarm (SwarmToken + SwarmCoordinator) and write the deployment file.

The same command as ``swarm deploy``; run ``python scripts/deploy.py --help`` for the options.
"""

from swarmchain.node.cli.deploy import main

if __name__ == "__main__":
    main()

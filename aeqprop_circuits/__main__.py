from aeqprop_circuits.cli.main import main

main()

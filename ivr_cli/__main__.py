from ivr_cli.main import main

main()

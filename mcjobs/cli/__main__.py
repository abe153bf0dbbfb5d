from mcjobs.cli.main import main

main()

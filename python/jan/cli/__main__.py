from jan.cli import main

main()

from renderctl.cli import main

main()

from demo_app.server import main

raise SystemExit(main())

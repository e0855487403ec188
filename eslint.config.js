import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['actions/*/dist/**', 'node_modules/**', 'coverage/**', '.bench/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.{js,mjs,cjs}'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        module: 'writable',
        require: 'readonly',
        URL: 'readonly',
      },
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // The core never reaches the Actions runtime, the CLI or the sandbox (docs/architecture.md):
    // it takes a logger and typed options, so the action, the CLI and the sandbox share it.
    files: [
      'src/lib/**',
      'src/backup/**',
      'src/host/**',
      'src/models/**',
      'src/provision/**',
      'src/serverless/**',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@actions/*'], message: 'Only src/actions and src/cli know the runtime.' },
            { group: ['**/sandbox/**'], message: 'The core never imports the sandbox.' },
            { group: ['**/actions/**', '**/cli/**'], message: 'The core never imports upward.' },
          ],
        },
      ],
    },
  },
  {
    // The stand-ins are not the client: they take no rule from the code they stand in front of.
    files: ['src/sandbox/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@actions/*'], message: 'The sandbox never reaches the Actions runtime.' },
            {
              group: ['**/serverless/**'],
              message:
                "The Verda emulator derives its rules from the API contract, not the client's.",
            },
            { group: ['**/actions/**', '**/cli/**'], message: 'The sandbox never imports upward.' },
          ],
        },
      ],
    },
  },
);

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { createChatClient } from './chat';
import { ChatContext } from './hooks/useChat';
import { initialLanguage } from './i18n';
import { I18nProvider } from './i18n/I18n';
import './styles.css';

const client = createChatClient();
client.start();

// Before the first render, so the page is announced in its language from the start.
const lang = initialLanguage();
document.documentElement.lang = lang;

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <I18nProvider initial={lang}>
      <ChatContext.Provider value={client}>
        <App />
      </ChatContext.Provider>
    </I18nProvider>
  </StrictMode>,
);
